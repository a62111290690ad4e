package usersync

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	t.Run("a failed write leaves the old file and no temporary file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "users.csv")
		if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("disk full")
		err := writeFileAtomic(path, outputFileMode, func(w io.Writer) error {
			_, _ = io.WriteString(w, strings.Repeat("partial", 10000))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("error %v, want %v", err, boom)
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Errorf("file holds %.20q…, want the old content", got)
		}
		impOnlyFiles(t, dir, "users.csv")
	})
	t.Run("the new file has the requested mode and a missing directory is created", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sub", "users.csv")
		if err := writeFileAtomic(path, outputFileMode, func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != outputFileMode {
			t.Errorf("stat %v, mode %v; want %v", err, fi.Mode().Perm(), outputFileMode)
		}
		impOnlyFiles(t, filepath.Dir(path), "users.csv")
	})
	t.Run("a reader sees the old content or the new one, never a part", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "users.csv")
		a, b := bytes.Repeat([]byte("a"), 1<<20), bytes.Repeat([]byte("b"), 1<<20)
		if err := os.WriteFile(path, a, 0o640); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done)
			for i := range 50 {
				data := a
				if i%2 == 0 {
					data = b
				}
				if err := writeFileAtomic(path, outputFileMode, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		reads := 0
		for running := true; running; reads++ {
			select {
			case <-done:
				running = false
			default:
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read %d: %v", reads, err)
			}
			if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
				t.Fatalf("read %d saw %d bytes that are neither version", reads, len(got))
			}
		}
		wg.Wait()
		impOnlyFiles(t, dir, "users.csv")
	})
}

// impOnlyFiles fails unless dir holds exactly names.
func impOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Errorf("%s holds %q, want %q", dir, got, names)
	}
}

func TestApplyRecordsTheImport(t *testing.T) {
	cfg := impConfig(t)
	clock := newImpClock()
	im := impNew(t, cfg, clock)
	_, res := impApply(t, im, impSeededList(t), ApplyOptions{})
	if !res.Changed || res.Sequence != 1 || !res.CSVWritten {
		t.Errorf("first apply %+v; want changed, sequence 1, CSV written", res)
	}
	t.Run("the data directory holds the CSV, the JSON file and applied.json, nothing else", func(t *testing.T) {
		impOnlyFiles(t, cfg.Sync.DataDir, "applied.json", "import.json", "users.csv")
	})
	t.Run("applied.json is private to ldapgate and the outputs readable by its group", func(t *testing.T) {
		for name, want := range map[string]fs.FileMode{"applied.json": 0o600, "import.json": 0o640, "users.csv": 0o640} {
			if fi, err := os.Stat(filepath.Join(cfg.Sync.DataDir, name)); err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s: %v, mode %v, want %v", name, err, fi.Mode().Perm(), want)
			}
		}
	})
	t.Run("a damaged applied.json stops the importer instead of re-creating everyone", func(t *testing.T) {
		broken := impConfig(t)
		if err := os.WriteFile(filepath.Join(broken.Sync.DataDir, "applied.json"), []byte(`{"version":1,"users":[`), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := NewImporter(broken, nil); err == nil {
			t.Error("NewImporter accepted a damaged applied.json")
		}
	})
	t.Run("an import applied with no users is still an import", func(t *testing.T) {
		empty := impConfig(t)
		im := impNew(t, empty, clock)
		_, res := impApply(t, im, nil, ApplyOptions{})
		if !res.Changed || res.Sequence != 1 || res.Users != 0 {
			t.Errorf("%+v", res)
		}
		if got, _ := os.ReadFile(empty.Import.CSVFile); !bytes.HasPrefix(got, []byte(`"displayname"`)) || bytes.Count(got, []byte("\n")) != 1 {
			t.Errorf("CSV %q, want the header row only", got)
		}
	})
	t.Run("a canceled context applies nothing", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		p, err := im.Plan(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := im.Apply(ctx, p, ApplyOptions{ConfirmDeletions: true}); !errors.Is(err, context.Canceled) {
			t.Errorf("Apply with a canceled context: %v", err)
		}
	})
}

func TestApplyRewritesAMissingCSV(t *testing.T) {
	cfg := impConfig(t)
	clock := newImpClock()
	users := impSeededList(t)
	impApply(t, impNew(t, cfg, clock), users, ApplyOptions{})
	want, err := os.ReadFile(cfg.Import.CSVFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(cfg.Import.CSVFile); err != nil {
		t.Fatal(err)
	}
	_, res := impApply(t, impNew(t, cfg, clock), users, ApplyOptions{})
	got, err := os.ReadFile(cfg.Import.CSVFile)
	if err != nil || !bytes.Equal(got, want) || !res.CSVWritten || res.Changed {
		t.Errorf("after removing the CSV: %+v, read %v; want the same CSV written again and nothing else changed", res, err)
	}
}
