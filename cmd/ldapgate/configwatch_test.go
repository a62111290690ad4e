package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// waitDue waits up to timeout for the watch to say a reload is due.
func waitDue(t *testing.T, cw *configWatch, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-cw.due:
	case <-time.After(timeout):
		t.Fatalf("no reload was due %v after %s", timeout, what)
	}
}

// assertQuiet checks that no reload becomes due within d.
func assertQuiet(t *testing.T, cw *configWatch, d time.Duration, after string) {
	t.Helper()
	select {
	case <-cw.due:
		t.Fatalf("a reload was due after %s, want none", after)
	case <-time.After(d):
	}
}

func TestConfigWatchSeesWritesAndRenamesOverTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "ldapgate.yaml")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(path, []byte("a: 1\n"), 0o600))
	const debounce = 300 * time.Millisecond // generous: the writes of one burst must fall within it on a loaded machine
	cw, err := startConfigWatch([]string{path}, debounce, zap.NewNop())
	must(err)
	t.Cleanup(cw.close)

	// A burst of writes in place is one reload.
	for i := range 5 {
		must(os.WriteFile(path, []byte{byte('a' + i), '\n'}, 0o600))
	}
	waitDue(t, cw, 10*time.Second, "five writes")
	assertQuiet(t, cw, 3*debounce, "the burst's reload")

	// What editors and configuration management do: write a new file, rename it over.
	tmp := filepath.Join(dir, ".ldapgate.yaml.tmp")
	must(os.WriteFile(tmp, []byte("b: 2\n"), 0o600))
	must(os.Rename(tmp, path))
	waitDue(t, cw, 10*time.Second, "a rename over the file")

	// Other files in the directory are not the configuration.
	must(os.WriteFile(filepath.Join(dir, "other.txt"), []byte("x"), 0o600))
	assertQuiet(t, cw, 3*debounce, "a write of another file in the directory")
}

func TestConfigWatchFollowsTheFilesTheConfigurationNames(t *testing.T) {
	t.Parallel()
	confDir, caDir, newCADir := t.TempDir(), t.TempDir(), t.TempDir()
	path, ca, newCA := filepath.Join(confDir, "ldapgate.yaml"), filepath.Join(caDir, "ca.pem"), filepath.Join(newCADir, "ca.pem")
	cw, err := startConfigWatch([]string{path, ca}, 20*time.Millisecond, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cw.close)
	if !cw.concerns(fsnotify.Event{Name: ca, Op: fsnotify.Create}) || cw.concerns(fsnotify.Event{Name: ca, Op: fsnotify.Chmod}) {
		t.Error("a created CA file should count and a mode change alone should not")
	}
	if err := cw.watch([]string{path, newCA}); err != nil {
		t.Fatalf("watch: %v", err)
	}
	if cw.concerns(fsnotify.Event{Name: ca, Op: fsnotify.Write}) || !cw.concerns(fsnotify.Event{Name: newCA, Op: fsnotify.Write}) {
		t.Error("after the configuration named another CA file, the old one still counts or the new one does not")
	}
	if cw.dirs[caDir] || !cw.dirs[newCADir] {
		t.Errorf("watched directories %v: want %s instead of %s", cw.dirs, newCADir, caDir)
	}
	if err := os.WriteFile(newCA, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitDue(t, cw, 10*time.Second, "a write of the newly named CA file")
}
