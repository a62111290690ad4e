package faultproxy

import (
	"testing"
	"time"
)

func TestFaultString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault Fault
		want  string
	}{
		{name: "the zero fault is none", fault: Fault{}, want: "none"},
		{name: "none says so", fault: None(), want: "none"},
		{name: "latency names its delay", fault: Latency(50 * time.Millisecond), want: "latency 50ms"},
		{name: "a latency of zero is none", fault: Latency(0), want: "none"},
		{name: "blackhole says so", fault: Blackhole(), want: "blackhole"},
		{name: "reset says so", fault: Reset(), want: "reset"},
		{name: "cut after names its limit", fault: CutAfter(1000), want: "cut after 1000 bytes"},
		{name: "a negative cut is a cut after 0", fault: CutAfter(-5), want: "cut after 0 bytes"},
		{name: "refuse says so", fault: Refuse(), want: "refuse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.fault.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}
