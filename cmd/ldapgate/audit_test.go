package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ldapgate/ldapgate/configs"
)

// auditJSON parses the JSON lines of an audit output.
func auditJSON(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("an audit line is not JSON (%v): %q", err, line)
		}
		out = append(out, m)
	}
	return out
}

func TestAuditFileIsReopenedOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	var stdout, stderr, processLog bytes.Buffer
	log, err := newLogger(&processLog, "console", "info")
	if err != nil {
		t.Fatal(err)
	}
	a, err := openAuditTo(configs.Audit{Output: path}, &stdout, &stderr, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	a.log.Info("bind", zap.String("login", "jdoe"), zap.Duration("dur", 1500*time.Millisecond))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the audit file has mode %v, want 0600", st.Mode().Perm())
	}

	// logrotate: move the file away, then SIGHUP.
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not created again within 5s of SIGHUP; process log:\n%s", path, processLog.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.log.Warn("bind", zap.String("login", "asmith"))
	a.close()

	old, err := os.ReadFile(rotated)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	oldLines, curLines := auditJSON(t, old), auditJSON(t, cur)
	if len(oldLines) != 1 || oldLines[0]["login"] != "jdoe" {
		t.Fatalf("the rotated file holds %v, want jdoe's line alone", oldLines)
	}
	if len(curLines) != 1 || curLines[0]["login"] != "asmith" || curLines[0]["level"] != "warn" {
		t.Fatalf("the reopened file holds %v, want asmith's warn line alone", curLines)
	}
	// JSON whatever the process log's format, with a timestamp and the
	// durations as the process log writes them.
	if ts, _ := oldLines[0]["ts"].(string); !strings.HasPrefix(ts, time.Now().Format("2006-01-")) {
		t.Errorf("ts = %q, want an ISO 8601 timestamp of today", oldLines[0]["ts"])
	}
	if oldLines[0]["dur"] != "1.5s" {
		t.Errorf("dur = %v, want \"1.5s\"", oldLines[0]["dur"])
	}
	if stdout.Len() > 0 || stderr.Len() > 0 {
		t.Errorf("a file output wrote to stdout %q or stderr %q", stdout.String(), stderr.String())
	}
	for _, want := range []string{"audit log", "reopened the audit log"} {
		if !strings.Contains(processLog.String(), want) {
			t.Errorf("the process log lacks %q:\n%s", want, processLog.String())
		}
	}
	if strings.Contains(processLog.String(), "jdoe") || strings.Contains(processLog.String(), "asmith") {
		t.Errorf("an audit line reached the process log:\n%s", processLog.String())
	}
}

func TestAuditStandardStreams(t *testing.T) {
	t.Parallel()
	for _, output := range []string{"stdout", "stderr"} {
		t.Run(output, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			a, err := openAuditTo(configs.Audit{Output: output}, &stdout, &stderr, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			a.log.Info("bind", zap.String("login", "jdoe"))
			a.close()
			got, other := &stdout, &stderr
			if output == "stderr" {
				got, other = &stderr, &stdout
			}
			lines := auditJSON(t, got.Bytes())
			if len(lines) != 1 || lines[0]["login"] != "jdoe" || lines[0]["ts"] == nil {
				t.Fatalf("%s holds %q, want one JSON line with jdoe and ts", output, got.String())
			}
			if other.Len() > 0 {
				t.Errorf("the other stream got %q", other.String())
			}
		})
	}
}

func TestAuditProcessLogKeepsTheDefault(t *testing.T) {
	t.Parallel()
	a, err := openAuditTo(configs.Audit{}, nil, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if a.log != nil {
		t.Fatal("audit.output \"\" built a sink of its own, want the process log's audit logger")
	}
}

func TestAuditFileThatCannotBeOpened(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "missing", "audit.log")
	_, err := openAuditTo(configs.Audit{Output: path}, nil, nil, zap.NewNop())
	if err == nil || !strings.HasPrefix(err.Error(), "audit.output: open "+path) || !strings.Contains(err.Error(), "make the directory writable") {
		t.Fatalf("error %v, want one naming audit.output and the file, saying what to do", err)
	}
}
