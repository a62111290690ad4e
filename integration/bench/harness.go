package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds of the harness's own waits.
const (
	buildWithin = 5 * time.Minute  // go build of ldapgate on a loaded machine
	startWithin = 30 * time.Second // a server process listens
	stopWithin  = 15 * time.Second // a server process exits after SIGTERM
	upWithin    = 30 * time.Minute // integration/samba/up.sh, 10,000 users seeded on a first run included
)

// harness is what every scenario shares: the work directory, the gateway
// binary, the processes started (stopped after each scenario) and notes for the
// report.
type harness struct {
	o       *options
	logw    io.Writer
	started time.Time
	root    string // the module's root directory
	work    string // the work directory: configs, logs, data
	bin     string // the ldapgate binary built from root
	binProf string // the same built with -tags pprof (--profile)
	self    string // this program's binary, for the simulator child

	current string // the scenario running

	mu    sync.Mutex
	procs []*proc
	notes []string // facts worth a line under the table (seeding time, install)

	testbedUsers int  // bulk users the test bed has been brought up with (-1: not yet)
	slapdReady   bool // slapd installed and its Debian service stopped
}

func newHarness(ctx context.Context, o *options, logw io.Writer) (*harness, error) {
	h := &harness{o: o, logw: logw, started: time.Now(), testbedUsers: -1}
	var err error
	if h.root, err = moduleRoot(); err != nil {
		return nil, err
	}
	if h.self, err = os.Executable(); err != nil {
		return nil, fmt.Errorf("this program's path: %w", err)
	}
	if h.work, err = os.MkdirTemp("", "ldapgate-bench-"); err != nil {
		return nil, err
	}
	h.logf("work directory %s", h.work)
	h.bin = filepath.Join(h.work, "ldapgate")
	if err := h.build(ctx, h.bin); err != nil {
		h.close()
		return nil, err
	}
	if o.profile {
		h.binProf = filepath.Join(h.work, "ldapgate-pprof")
		if err := h.build(ctx, h.binProf, "-tags", "pprof"); err != nil {
			h.close()
			return nil, err
		}
	}
	return h, nil
}

// build compiles ./cmd/ldapgate into bin.
func (h *harness) build(ctx context.Context, bin string, flags ...string) error {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, buildWithin)
	defer cancel()
	args := append(append([]string{"build"}, flags...), "-o", bin, "./cmd/ldapgate")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = h.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	h.logf("built %s in %s", filepath.Base(bin), time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// close stops every process and removes the work directory (unless --keep).
func (h *harness) close() {
	h.stopAll()
	if h.o.keep {
		h.logf("kept the work directory %s", h.work)
		return
	}
	_ = os.RemoveAll(h.work)
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.logw, "bench %s: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// note adds a line under the report's table.
func (h *harness) note(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, fmt.Sprintf(format, args...))
}

// dir makes a new directory under the work directory.
func (h *harness) dir(name string) (string, error) {
	return os.MkdirTemp(h.work, name+"-")
}

// moduleRoot finds the ldapgate module from the working directory upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/ldapgate/ldapgate\n")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside the ldapgate module: run the bench from the repository", dir)
		}
	}
}

// testbed brings the Samba test bed up with at least users bulk users
// (integration/samba/up.sh is idempotent and only adds what is missing). It
// never stops or reconfigures the DCs: other tests use them at the same time.
func (h *harness) testbed(ctx context.Context, users int) error {
	if h.testbedUsers >= users {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("the Samba test bed needs root: run the bench as root")
	}
	args := []string{filepath.Join(h.root, "integration", "samba", "up.sh")}
	if users > 0 {
		args = append(args, "--users", strconv.Itoa(users))
	}
	h.logf("test bed: bash %s", strings.Join(args, " "))
	uctx, cancel := context.WithTimeout(ctx, upWithin)
	defer cancel()
	t0 := time.Now()
	var out bytes.Buffer
	cmd := exec.CommandContext(uctx, "bash", args...)
	cmd.Dir = h.root
	cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, h.logw), io.MultiWriter(&out, h.logw)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("integration/samba/up.sh failed (%w); see its output above", err)
	}
	if strings.Contains(out.String(), "bulk users with ldbadd") {
		h.note("The test bed's bulk users were seeded up to %d by this run, which took %s (not counted in the scenarios).",
			users, time.Since(t0).Round(time.Second))
	}
	h.testbedUsers = users
	return nil
}

// --- processes ----------------------------------------------------------------

// proc is a child process the bench started, its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// start runs argv as a child with its stdout and stderr in WORK/NAME.log. The
// harness stops it after the scenario (or when the bench ends).
func (h *harness) start(name string, argv []string, env []string) (*proc, error) {
	p := &proc{name: name, logPath: filepath.Join(h.work, name+".log"), exited: make(chan struct{})}
	for i := 2; fileExists(p.logPath); i++ {
		p.logPath = filepath.Join(h.work, fmt.Sprintf("%s-%d.log", name, i))
	}
	f, err := os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // the child has its own descriptor
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), env...)
	// A bench killed without its cleanup must not leave servers behind.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// stopAll stops every process still running, the last started first.
func (h *harness) stopAll() {
	h.mu.Lock()
	procs := h.procs
	h.procs = nil
	h.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(); err != nil {
			h.logf("%v", err)
		}
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop ends the process with SIGTERM, and SIGKILL after stopWithin.
func (p *proc) stop() error {
	if !p.alive() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopWithin):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s was still running %s after SIGTERM: killed it", p.name, stopWithin)
	}
}

// peakRSS is the process's peak resident set size (VmHWM) in bytes, read from
// /proc while it runs.
func (p *proc) peakRSS() (int64, error) {
	return procStatusBytes(p.cmd.Process.Pid, "VmHWM")
}

// procStatusBytes reads a "kB" field of /proc/PID/status.
func procStatusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, field, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// logLine is one line of a JSON log.
type logLine map[string]any

func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

// waitLog waits until the process's JSON log has a line that match accepts and
// returns it; it fails when the process exits first or within passes.
func (p *proc) waitLog(ctx context.Context, what string, within time.Duration, match func(logLine) bool) (logLine, error) {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var offset int64
	for {
		l, n := scanLog(p.logPath, offset, match)
		if l != nil {
			return l, nil
		}
		offset = n
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%s: waiting for %s: %w", p.name, what, context.Cause(ctx))
		case <-p.exited:
			if l, _ := scanLog(p.logPath, offset, match); l != nil {
				return l, nil
			}
			return nil, fmt.Errorf("%s exited (%v) before %s; the end of its log:\n%s", p.name, p.waitErr, what, p.tail())
		case <-deadline.C:
			return nil, fmt.Errorf("%s: no %s within %s; the end of its log:\n%s", p.name, what, within, p.tail())
		case <-tick.C:
		}
	}
}

// scanLog returns the first complete JSON line at or after offset that match
// accepts, or the offset of the first line not yet complete.
func scanLog(path string, offset int64, match func(logLine) bool) (logLine, int64) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset
	}
	defer func() { _ = f.Close() }()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, offset
	}
	r := bufio.NewReaderSize(f, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, offset // a line still being written waits for the next scan
		}
		offset += int64(len(line))
		var l logLine
		if json.Unmarshal(line, &l) == nil && match(l) {
			return l, offset
		}
	}
}
