//go:build integration

package integration

// Helpers of the gateway tests (gateway_test.go, failover_test.go): gateways as a
// subprocess of the real binary or in-process, their JSON logs, ldap-utils, raw
// LDAP messages, a client that keeps binding, and the test bed's dc1.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/ldapgate/ldapgate/configs"
	"github.com/ldapgate/ldapgate/integration/testbed"
	"github.com/ldapgate/ldapgate/proxy"
	"github.com/ldapgate/ldapgate/proxy/upstream"
)

// Bounds of the waits in the gateway tests.
const (
	startWithin = 15 * time.Second // a gateway listens
	stopWithin  = 15 * time.Second // a gateway exits after SIGTERM
	logWithin   = 5 * time.Second  // an audit line shows up
	toolWithin  = 20 * time.Second // one ldapsearch or ldapwhoami
)

// repoRoot is the module's root: go test runs in the package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// --- the real binary -------------------------------------------------------------

var gatewayBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// gatewayBinary builds ./cmd/ldapgate once per test run.
func gatewayBinary(t *testing.T) string {
	t.Helper()
	gatewayBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "ldapgate-integration-bin-")
		if err != nil {
			gatewayBin.err = err
			return
		}
		gatewayBin.dir = dir
		gatewayBin.path = filepath.Join(dir, "ldapgate")
		cmd := exec.Command("go", "build", "-o", gatewayBin.path, "./cmd/ldapgate")
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			gatewayBin.err = fmt.Errorf("go build ./cmd/ldapgate: %w\n%s", err, out)
		}
	})
	if gatewayBin.err != nil {
		t.Fatal(gatewayBin.err)
	}
	return gatewayBin.path
}

func removeGatewayBinary() {
	if gatewayBin.dir != "" {
		_ = os.RemoveAll(gatewayBin.dir)
	}
}

// --- configuration ---------------------------------------------------------------

// gatewayConfig is configs/testbed.yaml as the tests run it: the listener on a
// free loopback port, debug logs in JSON, the test bed's CA from testbed.CAFile,
// a short shutdown, then changes (dotted keys such as "upstream.op_timeout").
func gatewayConfig(t *testing.T, changes map[string]any) []byte {
	t.Helper()
	base := map[string]any{
		"listen.address":          "127.0.0.1:0",
		"listen.shutdown_timeout": "3s",
		"log.level":               "debug",
		"log.format":              "json",
		"upstream.ca_file":        testbed.CAFile(),
		// Every gateway of a run gets its own export port and view, so gateways
		// started side by side never share a port or a view.db.
		"http.address":  "127.0.0.1:0",
		"sync.data_dir": t.TempDir(),
	}
	out, err := testbed.GatewayConfig(repoRoot(t), base, changes)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// logPath names a new log file in logDir for one gateway of the running test.
func logPath(t *testing.T, name string) string {
	t.Helper()
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, t.Name()+"-"+name)
	f, err := os.CreateTemp(logDir, clean+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	gatewaysStarted.Add(1)
	return f.Name()
}

// --- a gateway as a subprocess ---------------------------------------------------

// procGateway is the real binary running as a subprocess (`ldapgate serve`,
// or another command such as demo), logging (stderr, and stdout unless the
// test reads it) into a file under logDir.
type procGateway struct {
	addr    string // the plain-LDAP listener, host:port
	what    string // "ldapgate serve": the command, for messages
	cfgPath string // its configuration file ("" when it has none)
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// startProcGateway starts the real binary with gatewayConfig(changes) and
// returns once it listens. The cleanup stops it with SIGTERM and fails the test
// unless it exits 0 in time.
func startProcGateway(t *testing.T, name string, changes map[string]any) *procGateway {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "ldapgate.yaml")
	if err := os.WriteFile(cfgPath, gatewayConfig(t, changes), 0o600); err != nil {
		t.Fatal(err)
	}
	g := launchProc(t, name, nil, "serve", "--config", cfgPath)
	g.cfgPath = cfgPath

	deadline := time.Now().Add(startWithin)
	for g.addr == "" {
		select {
		case <-g.exited:
			// It may have failed before its logger existed: not JSON.
			t.Fatalf("%s exited before it listened (%v); its output:\n%s", g.what, g.waitErr, tail(g.logPath))
		default:
		}
		for _, l := range readLog(t, g.logPath) {
			if l.str("msg") == "listening" && l["tls"] == false {
				g.addr = l.str("listen")
			}
		}
		if g.addr == "" {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not log its plain listener within %s; its log:\n%s", g.what, startWithin, tail(g.logPath))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return g
}

// httpAddr returns the admin/export HTTP listener's host:port, from the log
// line the gateway writes once it listens.
func (g *procGateway) httpAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(startWithin)
	for {
		for _, l := range readLog(t, g.logPath) {
			if l.str("msg") == "http listener started" {
				return l.str("listen")
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not log its http listener within %s; its log:\n%s", startWithin, tail(g.logPath))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// launchProc starts the real binary with args, its stderr appended to a new log
// file under logDir, its stdout too when stdout is nil. The cleanup stops it with
// SIGTERM and fails the test unless it exits 0 in time.
func launchProc(t *testing.T, name string, stdout io.Writer, args ...string) *procGateway {
	t.Helper()
	bin := gatewayBinary(t)
	g := &procGateway{what: "ldapgate " + args[0], logPath: logPath(t, name), exited: make(chan struct{})}
	logFile, err := os.OpenFile(g.logPath, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(bin, args...)
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	if stdout != nil {
		g.cmd.Stdout = stdout
	}
	err = g.cmd.Start()
	_ = logFile.Close() // the child has its own descriptor
	if err != nil {
		t.Fatalf("start %s: %v", g.what, err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// alive reports whether the process still runs.
func (g *procGateway) alive() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

func (g *procGateway) stop(t *testing.T) {
	if !g.alive() {
		t.Errorf("%s died during the test (%v); the end of its log:\n%s", g.what, g.waitErr, tail(g.logPath))
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		if g.waitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM, want 0; the end of its log:\n%s", g.what, g.waitErr, tail(g.logPath))
		}
	case <-time.After(stopWithin):
		_ = g.cmd.Process.Kill()
		<-g.exited
		t.Errorf("%s was still running %s after SIGTERM; killed it", g.what, stopWithin)
	}
}

// --- a gateway in-process --------------------------------------------------------

// inprocGateway is upstream.New + proxy.NewAuth + proxy.NewServer in the test
// process, so a test can read its Cluster's Stats.
type inprocGateway struct {
	addr    string
	cluster *upstream.Cluster
	logPath string
}

// newFileLogger is a debug-level JSON logger into path, shaped like the binary's.
func newFileLogger(t *testing.T, path string) *zap.Logger {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "ts"
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	ec.EncodeDuration = zapcore.StringDurationEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.Lock(f), zapcore.DebugLevel))
	t.Cleanup(func() {
		_ = log.Sync()
		_ = f.Close()
	})
	return log
}

func startInprocGateway(t *testing.T, name string, changes map[string]any) *inprocGateway {
	t.Helper()
	cfg, err := configs.Parse(gatewayConfig(t, changes), name+".yaml")
	if err != nil {
		t.Fatalf("the gateway's configuration: %v", err)
	}
	g := &inprocGateway{logPath: logPath(t, name)}
	log := newFileLogger(t, g.logPath)
	g.cluster, err = upstream.New(cfg.Upstream, log)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := proxy.NewAuth(*cfg, g.cluster, log)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg.Listen, cfg.Upstream.BaseDN, auth, log, proxy.WithSearch(*cfg, g.cluster))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = l.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopWithin)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			t.Errorf("shut the gateway down: %v", err)
		}
		select {
		case err := <-served:
			if !errors.Is(err, proxy.ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-ctx.Done():
			t.Errorf("Serve did not return within %s of Shutdown", stopWithin)
		}
		_ = g.cluster.Close()
	})
	return g
}

// stats returns the i-th configured DC's snapshot.
func (g *inprocGateway) stats(i int) upstream.DCStats { return g.cluster.Stats()[i] }

// describeDC is a DC's snapshot for failure messages.
func describeDC(s upstream.DCStats) string {
	return fmt.Sprintf("%s: breaker %s, binds %d, searches %d, dials %d (%d failed), handshakes %d, probes %d, failures %d, last error %q",
		s.URL, s.Breaker, s.Binds, s.Searches, s.Dials, s.DialFailures, s.Handshakes, s.Probes, s.Failures, s.LastError)
}

// --- JSON logs -------------------------------------------------------------------

// logLine is one JSON log line.
type logLine map[string]any

func (l logLine) str(key string) string {
	s, _ := l[key].(string)
	return s
}

// num returns a numeric field (JSON numbers decode as float64), -1 if absent.
func (l logLine) num(key string) int {
	f, ok := l[key].(float64)
	if !ok {
		return -1
	}
	return int(f)
}

func logSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// readLog parses the complete lines of a log file; every line must be JSON.
func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	return readLogFrom(t, path, 0)
}

func readLogFrom(t *testing.T, path string, offset int64) []logLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = data[min(offset, int64(len(data))):]
	if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
		data = data[:i+1] // a line still being written waits for the next read
	} else {
		data = nil
	}
	var lines []logLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: a log line is not JSON (%v): %.200s", path, err, sc.Text())
		}
		lines = append(lines, l)
	}
	return lines
}

// auditLines returns the audit lines (event "auth") written after offset.
func auditLines(t *testing.T, path string, offset int64) []logLine {
	t.Helper()
	var out []logLine
	for _, l := range readLogFrom(t, path, offset) {
		if l.str("event") == "auth" {
			out = append(out, l)
		}
	}
	return out
}

// waitAudit waits (bounded) until n audit lines follow offset and returns them.
func waitAudit(t *testing.T, path string, offset int64, n int) []logLine {
	t.Helper()
	var got []logLine
	deadline := time.Now().Add(logWithin)
	for {
		if got = auditLines(t, path, offset); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d audit lines in %s after %s, want %d; the end of the log:\n%s", len(got), path, logWithin, n, tail(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tail returns the last lines of a log for failure messages.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// --- ldap-utils ------------------------------------------------------------------

// toolRun is what one ldap-utils command did.
type toolRun struct {
	exit           int
	stdout, stderr string
}

var additionalInfo = regexp.MustCompile(`additional info: (.*)`)

// diagnostic is the "additional info" ldap-utils printed, "" if none.
func (r toolRun) diagnostic() string {
	m := additionalInfo.FindStringSubmatch(r.stderr)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(m[1])
}

// runTool runs ldapsearch or ldapwhoami with a simple bind of login and password
// against the gateway at addr, ignoring ldap.conf and ~/.ldaprc.
func runTool(t *testing.T, tool, addr, login, password string) toolRun {
	t.Helper()
	args := []string{"-x", "-H", "ldap://" + addr, "-D", login, "-w", password, "-o", "nettimeout=10"}
	if tool == "ldapsearch" {
		args = append(args, "-LLL", "-s", "base", "-b", "", "namingContexts")
	}
	return runBounded(t, tool, nil, tool, args...)
}

// runBounded runs name with args, ignoring ldap.conf and ~/.ldaprc, within
// toolWithin; setup, when not nil, prepares the command (its stdin, its
// directory). The exit code is a result; a command that cannot start or does
// not finish in time fails the test, named by what.
func runBounded(t *testing.T, what string, setup func(*exec.Cmd), name string, args ...string) toolRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolWithin)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
	if setup != nil {
		setup(cmd)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := toolRun{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s; stdout:\n%s\nstderr:\n%s", what, toolWithin, r.stdout, r.stderr)
	case errors.As(err, &exitErr):
		r.exit = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run %s: %v", what, err)
	}
	return r
}

// --- go-ldap against the gateway -------------------------------------------------

// dialGateway opens a go-ldap connection to the gateway at addr.
func dialGateway(addr string) (*ldap.Conn, error) {
	l, err := ldap.DialURL("ldap://"+addr, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return nil, err
	}
	l.SetTimeout(15 * time.Second)
	return l, nil
}

// bindAt binds on a new connection to the gateway and returns the result code
// (0 on success) and the diagnostic text. Empty passwords are sent as they are.
// Anything but an LDAP answer fails the test.
func bindAt(t *testing.T, addr, name, password string) (uint16, string) {
	t.Helper()
	l, err := dialGateway(addr)
	if err != nil {
		t.Fatalf("connect to the gateway at %s: %v", addr, err)
	}
	defer l.Close()
	return bindCode(t, l, name, password)
}

func bindCode(t *testing.T, l *ldap.Conn, name, password string) (uint16, string) {
	t.Helper()
	_, err := l.SimpleBind(&ldap.SimpleBindRequest{Username: name, Password: password, AllowEmptyPassword: true})
	if err == nil {
		return 0, ""
	}
	var lerr *ldap.Error
	if !errors.As(err, &lerr) || lerr.ResultCode >= ldap.ErrorNetwork {
		t.Fatalf("bind %q: no LDAP answer: %v", logName(name), err)
	}
	diag := ""
	if lerr.Err != nil {
		diag = lerr.Err.Error()
	}
	return lerr.ResultCode, diag
}

// logName shortens a bind name for a test message.
func logName(name string) string {
	if len(name) > 40 {
		return fmt.Sprintf("%.40s… (%d bytes)", name, len(name))
	}
	return name
}

// --- raw LDAP messages -----------------------------------------------------------

// bindMessage encodes an LDAPMessage with a BindRequest of the given version.
func bindMessage(id, version int64, name string, auth *ber.Packet) []byte {
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, version, "Version"))
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "Name"))
	req.AppendChild(auth)
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Message")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "Message ID"))
	msg.AppendChild(req)
	return msg.Bytes()
}

func simpleAuth(password string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Simple")
}

func saslAuth(mechanism string) *ber.Packet {
	p := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "SASL")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, mechanism, "Mechanism"))
	return p
}

// ldapResult is the head of one response: message ID, protocol op and result code.
type ldapResult struct {
	id   int64
	op   ber.Tag
	code int64
}

// readResult reads one response from c, failing the test after 10 s.
func readResult(t *testing.T, c net.Conn) ldapResult {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	p, err := ber.ReadPacket(c)
	if err != nil {
		t.Fatalf("read a response: %v", err)
	}
	if len(p.Children) < 2 || len(p.Children[1].Children) < 1 {
		t.Fatalf("a response without a result: %s", p.Description)
	}
	id, _ := p.Children[0].Value.(int64)
	code, _ := p.Children[1].Children[0].Value.(int64)
	return ldapResult{id: id, op: p.Children[1].Tag, code: code}
}

// closedSoon reports whether the peer closes c within 5 s (what it sends
// meanwhile is read and dropped).
func closedSoon(c net.Conn) bool {
	deadline := time.Now().Add(5 * time.Second)
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// dialFrom opens a raw TCP connection to addr from the loopback address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", src, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// --- a client that keeps binding -------------------------------------------------

// goodClient binds jdoe over and over against a gateway, on one connection that
// it replaces every 20 binds, and records every bind that did not succeed.
type goodClient struct {
	binds    atomic.Int64
	mu       sync.Mutex
	failures []string
	nfail    int
	stop     chan struct{}
	done     chan struct{}
}

func startGoodClient(t *testing.T, addr string) *goodClient {
	t.Helper()
	g := &goodClient{stop: make(chan struct{}), done: make(chan struct{})}
	go g.run(addr)
	t.Cleanup(func() { g.finish(t) })
	g.waitMore(t, 3, "the good client starts binding")
	return g
}

func (g *goodClient) run(addr string) {
	defer close(g.done)
	var l *ldap.Conn
	defer func() {
		if l != nil {
			l.Close()
		}
	}()
	for n := 0; ; n++ {
		select {
		case <-g.stop:
			return
		default:
		}
		if l != nil && n%20 == 0 {
			l.Close()
			l = nil
		}
		if l == nil {
			var err error
			if l, err = dialGateway(addr); err != nil {
				g.fail(fmt.Errorf("connect: %w", err))
				time.Sleep(50 * time.Millisecond) // back off; the test fails anyway
				continue
			}
		}
		if err := l.Bind(testbed.JDoe.Login, testbed.JDoe.Password); err != nil {
			g.fail(fmt.Errorf("bind: %w", err))
			l.Close()
			l = nil
			continue
		}
		g.binds.Add(1)
	}
}

func (g *goodClient) fail(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nfail++
	if len(g.failures) < 10 {
		g.failures = append(g.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
	}
}

// waitMore waits (bounded) until the client has bound n more times.
func (g *goodClient) waitMore(t *testing.T, n int64, what string) {
	t.Helper()
	target := g.binds.Load() + n
	deadline := time.Now().Add(15 * time.Second)
	for g.binds.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the good client bound %d times in 15s, want %d more; its failures: %s", what, g.binds.Load()-target+n, n, g.report())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (g *goodClient) report() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.nfail == 0 {
		return "none"
	}
	return fmt.Sprintf("%d, first ones:\n  %s", g.nfail, strings.Join(g.failures, "\n  "))
}

// finish stops the client and fails the test if any of its binds failed.
func (g *goodClient) finish(t *testing.T) {
	select {
	case <-g.stop:
		return
	default:
	}
	close(g.stop)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		t.Errorf("the good client did not stop within 20s")
	}
	g.mu.Lock()
	n := g.nfail
	g.mu.Unlock()
	if n > 0 {
		t.Errorf("the good client was disturbed: %s", g.report())
	}
	t.Logf("the good client bound jdoe %d times", g.binds.Load())
}

// --- the test bed ----------------------------------------------------------------

// dc1Stopped is set while a test has dc1 stopped, so TestMain can restart it
// when the test could not.
var dc1Stopped atomic.Bool

// dcScript runs integration/samba/dc.sh ACTION DC, bounded.
func dcScript(action, dc string, within time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("samba", "dc.sh"), action, dc)
	cmd.Env = append(os.Environ(), "LDAPGATE_TESTBED_LOCK_TIMEOUT=60")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("dc.sh %s %s did not finish within %s", action, dc, within)
	}
	return strings.TrimSpace(string(out)), err
}

// stopDC1 stops the test bed's dc1 for real; a cleanup starts it again, also
// when the test fails.
func stopDC1(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if err := ensureDC1Running(); err != nil {
			t.Errorf("restore dc1: %v", err)
		}
	})
	dc1Stopped.Store(true)
	if out, err := dcScript("stop", "dc1", 90*time.Second); err != nil {
		t.Fatalf("integration/samba/dc.sh stop dc1: %v\n%s", err, out)
	}
}

// startDC1 starts dc1 and returns once it answers LDAPS. A failed start is
// tried once more: what is under test is the gateway's fail-back, and a Samba
// that dies while starting is the test bed's problem (logged, for the record).
func startDC1(t *testing.T) {
	t.Helper()
	out, err := dcScript("start", "dc1", 120*time.Second)
	if err != nil {
		t.Logf("integration/samba/dc.sh start dc1 failed once, trying again: %v\n%s", err, out)
		out, err = dcScript("start", "dc1", 120*time.Second)
	}
	if err != nil {
		t.Fatalf("integration/samba/dc.sh start dc1: %v\n%s", err, out)
	}
	dc1Stopped.Store(false)
}

// ensureDC1Running starts dc1 unless dc.sh says it runs and answers.
func ensureDC1Running() error {
	if _, err := dcScript("status", "dc1", 30*time.Second); err == nil {
		dc1Stopped.Store(false)
		return nil
	}
	out, err := dcScript("start", "dc1", 120*time.Second)
	if err != nil {
		return fmt.Errorf("dc.sh start dc1: %w\n%s", err, out)
	}
	dc1Stopped.Store(false)
	return nil
}

// restoreDC1AfterRun restarts dc1 if a test left it stopped.
func restoreDC1AfterRun() {
	if !dc1Stopped.Load() {
		return
	}
	if err := ensureDC1Running(); err != nil {
		fmt.Fprintf(os.Stderr, "TestMain: dc1 was left stopped and could not be restarted: %v\n", err)
		return
	}
	fmt.Fprintln(os.Stderr, "TestMain: dc1 was left stopped by a test; restarted it")
}

// lockHLockedOut makes sure hlocked is locked out on dc1, the DC the gateways
// send its binds to. Its PSO locks it after 3 bad passwords for 99999 minutes,
// so this is rarely needed: it does what up.sh's relock_hlocked does (up.sh has
// no way to run that step alone), three bad binds on dc1.
func lockHLockedOut(t *testing.T) {
	t.Helper()
	dn := testbed.HLocked.DN()
	if bindResult(t, dcs[0], dn, testbed.HLocked.Password) == "775" {
		return
	}
	for i := 1; i <= 3; i++ {
		_ = bindResult(t, dcs[0], dn, wrongPassword(fmt.Sprintf("relocking-hlocked-%d", i)))
	}
	if got := bindResult(t, dcs[0], dn, testbed.HLocked.Password); got != "775" {
		t.Fatalf("hlocked is not locked out on dc1 after three bad binds: its bind gives %s", describe(got))
	}
}

// badPwdCountOf reads the account's badPwdCount on one DC (per DC: not
// replicated). Samba leaves the attribute out until it has counted a bad
// password on that DC, which reads as 0.
func badPwdCountOf(t *testing.T, conn *ldap.Conn, dn string) int {
	t.Helper()
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=user)", []string{"badPwdCount"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("read badPwdCount of %s: %v", dn, err)
	}
	v := res.Entries[0].GetAttributeValue("badPwdCount")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("badPwdCount of %s: %v", dn, err)
	}
	return n
}

// raiseFileLimit makes sure this process may open need files.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= need {
		return
	}
	lim.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raise RLIMIT_NOFILE to %d: %v", lim.Cur, err)
	}
	if lim.Cur < need {
		t.Fatalf("RLIMIT_NOFILE's hard limit is %d; this test needs %d open files", lim.Max, need)
	}
}
