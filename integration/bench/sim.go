package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ldapgate/ldapgate/integration/adsim"
)

// simCommand is the hidden first argument that makes this program the AD
// simulator's host process: S5 and S6 run the simulator in a child of its own,
// so the gateway's and the sync's peak RSS are theirs alone.
const simCommand = "__adsim"

// simReady is the line the simulator child prints once its DC listens.
type simReady struct {
	Msg        string  `json:"msg"` // "sim ready"
	URL        string  `json:"url"`
	ServerName string  `json:"server_name"`
	CAFile     string  `json:"ca_file"`
	Users      int     `json:"users"`     // for the child's log
	SeedSecs   float64 `json:"seed_secs"` // for the child's log: how long seeding took

	proc *proc // the child, in the parent
}

// runSim serves one simulated DC of a directory with --users bulk users
// until SIGTERM, with the directory's CA in --dir/ca.pem.
func runSim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(simCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	users := fs.Int("users", 0, "bulk users user0000… to seed")
	dir := fs.String("dir", "", "write the CA certificate into `DIR`/ca.pem")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "adsim: %v\n", err)
		return 1
	}
	t0 := time.Now()
	d, err := adsim.NewDirectory(adsim.Config{LoadUsers: *users})
	if err != nil {
		return fail(err)
	}
	seeded := time.Since(t0)
	ca := filepath.Join(*dir, "ca.pem")
	if err := os.WriteFile(ca, d.CACertPEM(), 0o600); err != nil {
		return fail(err)
	}
	dc, err := d.NewDC(adsim.DCConfig{Name: "dc1"})
	if err != nil {
		return fail(err)
	}
	if err := dc.Start("127.0.0.1:0"); err != nil {
		return fail(err)
	}
	defer func() { _ = dc.Close() }()
	if err := json.NewEncoder(stdout).Encode(simReady{
		Msg: "sim ready", URL: dc.URL(), ServerName: dc.HostName(), CAFile: ca, Users: *users, SeedSecs: seeded.Seconds(),
	}); err != nil {
		return fail(err)
	}
	<-ctx.Done()
	return 0
}

// startSim starts the simulator child with users bulk users and returns what
// it listens on.
func (h *harness) startSim(ctx context.Context, users int) (simReady, error) {
	dir, err := h.dir("adsim")
	if err != nil {
		return simReady{}, err
	}
	p, err := h.start(fmt.Sprintf("adsim-%d", users), []string{h.self, simCommand, "--users", fmt.Sprint(users), "--dir", dir}, nil)
	if err != nil {
		return simReady{}, err
	}
	// Seeding 100,000 users takes a while on a loaded machine.
	l, err := p.waitLog(ctx, "the simulated DC", h.o.scenarioTimeout, func(l logLine) bool { return l.str("msg") == "sim ready" })
	if err != nil {
		return simReady{}, err
	}
	var r simReady
	data, _ := json.Marshal(l)
	if err := json.Unmarshal(data, &r); err != nil {
		return simReady{}, err
	}
	r.proc = p
	return r, nil
}

// simGatewayChanges points a gateway configuration at the simulator.
func simGatewayChanges(s simReady) map[string]any {
	return map[string]any{
		"upstream.servers": []map[string]any{{"url": s.URL, "server_name": s.ServerName}},
		"upstream.ca_file": s.CAFile,
	}
}
