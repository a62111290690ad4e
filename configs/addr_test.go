package configs

import "testing"

func TestIsLoopbackAddr(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:389": true, "127.0.0.3:0": true, "[::1]:389": true, "localhost:8389": true,
		":389": false, "0.0.0.0:389": false, "10.0.0.5:389": false, "[::]:389": false, "127.0.0.1": false, "": false,
	} {
		if got := IsLoopbackAddr(addr); got != want {
			t.Errorf("IsLoopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
