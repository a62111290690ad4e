package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitFile is configs/ldapgate.service, relative to this package.
const unitFile = "../../configs/ldapgate.service"

// unitSettings reads a unit file into its [Service] (etc.) keys; a key set
// several times keeps every value.
func unitSettings(t *testing.T, data []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: not a key=value line: %q", unitFile, line)
			}
			out[section+"."+key] = append(out[section+"."+key], value)
		}
	}
	return out
}

// TestServiceUnitIsHardened checks the settings the unit promises an admin:
// least privilege for a daemon that only needs to bind port 389.
func TestServiceUnitIsHardened(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	got := unitSettings(t, data)
	want := map[string]string{
		"Service.ExecStart":               "/usr/local/bin/ldapgate serve --config /etc/ldapgate/ldapgate.yaml",
		"Service.ExecReload":              "/bin/kill -HUP $MAINPID",
		"Service.Restart":                 "on-failure",
		"Service.LimitNOFILE":             "65536",
		"Service.DynamicUser":             "yes",
		"Service.AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"Service.CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateDevices":          "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectKernelModules":    "yes",
		"Service.ProtectKernelLogs":       "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.RestrictNamespaces":      "yes",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.SystemCallFilter":        "@system-service",
		// sync.data_dir's default is /var/lib/ldapgate.
		"Service.StateDirectory":         "ldapgate",
		"Service.ConfigurationDirectory": "ldapgate",
		"Install.WantedBy":               "multi-user.target",
	}
	for key, value := range want {
		if !slices.Contains(got[key], value) {
			t.Errorf("%s: %s=%q, want %q", unitFile, key, got[key], value)
		}
	}
}

// TestServiceUnitVerifies runs systemd-analyze verify on the unit, with
// ExecStart pointing at a freshly built ldapgate (verify wants the binary to
// exist; /usr/local/bin/ldapgate is not installed on a build machine), and
// checks that the binary accepts ExecStart's command line. Any output of
// verify (an unknown key, a bad value) fails the test.
func TestServiceUnitVerifies(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "ldapgate")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	const installed = "/usr/local/bin/ldapgate"
	if !bytes.Contains(data, []byte("ExecStart="+installed+" ")) {
		t.Fatalf("%s: ExecStart does not run %s", unitFile, installed)
	}
	unit := filepath.Join(dir, "ldapgate.service") // verify wants the unit's own name
	if err := os.WriteFile(unit, bytes.ReplaceAll(data, []byte("ExecStart="+installed), []byte("ExecStart="+bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, analyze, "verify", unit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s (ExecStart=%s): %v\n%s", unitFile, bin, err, out)
	}

	// ExecStart's arguments parse: the run fails on the missing file (1), not
	// on its command line (2).
	execStart := strings.Fields(unitSettings(t, data)["Service.ExecStart"][0])[1:]
	args := slices.Clone(execStart)
	args[len(args)-1] = filepath.Join(dir, "missing.yaml")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "missing.yaml") {
		t.Errorf("ldapgate %s: %v, want exit code 1 for the missing file; stderr:\n%s", strings.Join(args, " "), err, stderr.String())
	}
}

// dockerfile is configs/Dockerfile, relative to this package.
const dockerfile = "../../configs/Dockerfile"

// TestDockerfile checks what the image promises; no engine is needed (docker
// build itself runs where one is).
func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var goVersion string // "1.26" of "go 1.26.8"
	for _, l := range strings.Split(string(mod), "\n") {
		if v, ok := strings.CutPrefix(l, "go "); ok {
			parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
			goVersion = strings.Join(parts[:min(2, len(parts))], ".")
		}
	}
	text := string(data)
	for _, want := range []string{
		"FROM golang:" + goVersion + " AS build\n", // the builder follows go.mod
		"CGO_ENABLED=0 go build -trimpath",
		`-ldflags "-s -w -X main.version=${VERSION}"`,
		"./cmd/ldapgate",
		"FROM gcr.io/distroless/static-debian12:nonroot\n",
		"USER 65532:65532\n",
		"EXPOSE 389 636 8389\n",
		`ENTRYPOINT ["/usr/local/bin/ldapgate", "serve"]`,
		"docker build -f configs/Dockerfile",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", dockerfile, want)
		}
	}
}
