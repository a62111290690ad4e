//go:build integration

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ldapgate/ldapgate/integration/testbed"
)

// logDir holds the log of every gateway this package starts, as a subprocess or
// in-process, all at debug level. TestMain scans it for test passwords once every
// test has run: DESIGN.md's "no password in any log at any level".
var logDir string

// gatewaysStarted counts the gateways that logged into logDir, so that an empty
// logDir after gateways ran fails instead of passing a scan that measured nothing.
var gatewaysStarted atomic.Int64

// secret is a password the logs must never contain, and whose it is.
type secret struct {
	owner, value string
}

var extraSecrets struct {
	mu   sync.Mutex
	list []secret
}

// wrongPassword returns a distinctive wrong password for one use in one test and
// adds it to the passwords the log scan looks for.
func wrongPassword(use string) string {
	pw := "Wr0ng!pw-" + use
	extraSecrets.mu.Lock()
	extraSecrets.list = append(extraSecrets.list, secret{owner: "the wrong password used for " + use, value: pw})
	extraSecrets.mu.Unlock()
	return pw
}

// testSecrets is every password the scan looks for: the seeded accounts',
// Administrator's and the wrong ones the tests used.
func testSecrets() []secret {
	var out []secret
	for _, a := range append([]testbed.Account{testbed.Administrator}, testbed.Accounts...) {
		out = append(out, secret{owner: a.Login, value: a.Password})
	}
	extraSecrets.mu.Lock()
	out = append(out, extraSecrets.list...)
	extraSecrets.mu.Unlock()
	return out
}

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ldapgate-integration-logs-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "TestMain: log directory: %v\n", err)
		return 1
	}
	logDir = dir
	code := m.Run()
	restoreDC1AfterRun()
	removeGatewayBinary()

	if err := checkLogScanner(); err != nil {
		fmt.Fprintf(os.Stderr, "TestMain: the log scanner itself is broken: %v\n", err)
		return 1
	}
	leaks, files, size, err := scanLogs(dir, testSecrets())
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "TestMain: scan the gateway logs in %s: %v\n", dir, err)
		return 1
	case len(leaks) > 0:
		for _, l := range leaks {
			fmt.Fprintf(os.Stderr, "TestMain: FAIL: %s\n", l)
		}
		fmt.Fprintf(os.Stderr, "TestMain: a test password is in a gateway log (logs kept in %s)\n", dir)
		return 1
	case gatewaysStarted.Load() > 0 && size == 0:
		fmt.Fprintf(os.Stderr, "TestMain: FAIL: %d gateways ran but %s holds no log: the password scan measured nothing\n", gatewaysStarted.Load(), dir)
		return 1
	}
	if gatewaysStarted.Load() > 0 {
		fmt.Printf("TestMain: no test password in %d gateway log files (%d bytes, debug level)\n", files, size)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "TestMain: gateway logs kept in %s\n", dir)
		return code
	}
	_ = os.RemoveAll(dir)
	return 0
}

// scanLogs looks for every secret in every file under dir, raw and as a JSON
// string encoder would escape it. A leak names the file and the password's
// owner, never the password.
func scanLogs(dir string, secrets []secret) (leaks []string, files int, size int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		size += int64(len(data))
		for _, owner := range findSecrets(data, secrets) {
			leaks = append(leaks, fmt.Sprintf("%s contains the password of %s", path, owner))
		}
		return nil
	})
	return leaks, files, size, err
}

// findSecrets returns the owners of the secrets that occur in data.
func findSecrets(data []byte, secrets []secret) []string {
	var owners []string
	for _, s := range secrets {
		if strings.TrimSpace(s.value) == "" {
			continue // nothing distinctive to look for
		}
		for _, form := range secretForms(s.value) {
			if bytes.Contains(data, form) {
				owners = append(owners, s.owner)
				break
			}
		}
	}
	return owners
}

// secretForms is a password as it could appear in a JSON log line: raw, and
// escaped with and without HTML escaping.
func secretForms(pw string) [][]byte {
	forms := [][]byte{[]byte(pw)}
	for _, html := range []bool{true, false} {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		_ = enc.Encode(pw)
		quoted := bytes.TrimSpace(b.Bytes())
		forms = append(forms, quoted[1:len(quoted)-1])
	}
	return slices.CompactFunc(forms, bytes.Equal)
}

// checkLogScanner proves the scan finds a password written raw and escaped.
func checkLogScanner() error {
	canary := secret{owner: "the canary", value: `Pä"ss<w>0rd\€`}
	for _, form := range secretForms(canary.value) {
		line := append(append([]byte(`{"msg":"x","v":"`), form...), `"}`...)
		if got := findSecrets(line, []secret{canary}); len(got) != 1 {
			return fmt.Errorf("a log line holding %q was not flagged", form)
		}
	}
	if got := findSecrets([]byte(`{"msg":"clean"}`), []secret{canary}); len(got) != 0 {
		return fmt.Errorf("a clean line was flagged")
	}
	return nil
}
