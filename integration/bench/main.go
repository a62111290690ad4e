// Command bench is ldapgate's benchmark suite (issue 8): it starts what each
// scenario needs — the Samba AD test bed, the gateway as a real process, OpenLDAP
// slapd as the peer proxy, the AD simulator — runs the same load through the
// gateway and against its baseline back to back, and prints one markdown table
// with the gateway's figures, the baseline's, their ratio and the target.
//
//	go run ./integration/bench                       # every scenario (as root, about 10 minutes)
//	go run ./integration/bench --scenarios S1,S5 --duration 5s
//	go run ./integration/bench --quick               # a smoke test of every scenario
//
// Everything it starts is stopped when it ends, fails or gets Ctrl-C; the test
// bed's DCs are left running (other tests use them) and never reconfigured.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == simCommand {
		os.Exit(runSim(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line's settings.
type options struct {
	scenarios       []string      // selected scenario names, in table order
	duration        time.Duration // one measured run
	rounds          int           // gateway/baseline pairs per scenario; the median counts
	soak            time.Duration // S5's long run (heap and RSS over time)
	scenarioTimeout time.Duration // bound of one scenario
	quick           bool          // a smoke test: short runs, small data
	out             string        // also write the report here
	keep            bool          // keep the work directory (logs, configs, profiles)
	profile         bool          // take CPU profiles of the gateway under S2 and S5
	simUsers        []int         // S6's simulator sizes
	idleConns       int           // S7's idle client connections
	samba10k        int           // S6's Samba users
}

// allScenarios lists every scenario in table order.
var allScenarios = []string{"S1", "S2", "S3", "S4", "S5", "S6", "S7"}

func parseOptions(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: go run ./integration/bench [--scenarios S1,S2,...] [--duration 10s] [--out FILE] [--quick]

Runs ldapgate's benchmark scenarios (issue 8) and prints one markdown table:
per scenario the gateway's figure, the baseline's, the ratio, the target and
PASS or MISS, latencies and peak RSS. Needs root (the Samba test bed, slapd).

Scenarios: S1 new connection per bind vs AD over LDAPS; S2 reused connections
vs AD; S3 pascom's search-then-bind vs AD; S4 vs OpenLDAP slapd (back-ldap);
S5 the gateway's ceiling against the AD simulator; S6 sync of 10,000 users vs
ldapsearch, incremental, simulator 10k vs 100k; S7 10,000 idle connections
while S2 runs.

`)
		fs.PrintDefaults()
	}
	var o options
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "run only these `S1,S2,...` (comma-separated)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one measured run")
	fs.IntVar(&o.rounds, "rounds", 2, "gateway/baseline pairs per scenario, alternated; the median counts")
	fs.DurationVar(&o.soak, "soak", 60*time.Second, "length of S5's run that checks the heap stays flat")
	fs.DurationVar(&o.scenarioTimeout, "scenario-timeout", 6*time.Minute, "give up on a scenario after this long")
	fs.BoolVar(&o.quick, "quick", false, "smoke test: 2s runs, one round, small data sets (figures mean little)")
	fs.StringVar(&o.out, "out", "", "also write the report (facts and table) to `FILE`")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory with the processes' logs and configs")
	fs.BoolVar(&o.profile, "profile", false, "write CPU and heap profiles of the gateway under S2 and S5 into the work directory (implies --keep)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(*scen, ",") {
		s = strings.ToUpper(strings.TrimSpace(s))
		if s == "" {
			continue
		}
		if !slices.Contains(allScenarios, s) {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
		if !slices.Contains(o.scenarios, s) {
			o.scenarios = append(o.scenarios, s)
		}
	}
	slices.SortFunc(o.scenarios, func(a, b string) int { return slices.Index(allScenarios, a) - slices.Index(allScenarios, b) })
	switch {
	case len(o.scenarios) == 0:
		return nil, errors.New("--scenarios: none selected")
	case o.duration < time.Second || o.duration > 10*time.Minute:
		return nil, fmt.Errorf("--duration: %s is not between 1s and 10m", o.duration)
	case o.rounds < 1 || o.rounds > 10:
		return nil, fmt.Errorf("--rounds: %d is not between 1 and 10", o.rounds)
	case o.soak < time.Second || o.soak > 10*time.Minute:
		return nil, fmt.Errorf("--soak: %s is not between 1s and 10m", o.soak)
	case o.scenarioTimeout < 10*time.Second:
		return nil, fmt.Errorf("--scenario-timeout: %s is under 10s", o.scenarioTimeout)
	}
	o.simUsers = []int{10_000, 100_000}
	o.idleConns = 10_000
	o.samba10k = 10_000
	if o.quick {
		o.duration, o.rounds, o.soak = 2*time.Second, 1, 3*time.Second
		o.simUsers = []int{1_000, 10_000}
		o.idleConns = 500
		o.samba10k = 0 // whatever the test bed holds
	}
	if o.profile {
		o.keep = true
	}
	return &o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	report, err := runBench(ctx, o, stderr)
	if report != "" {
		fmt.Fprint(stdout, report)
		if o.out != "" {
			if werr := os.WriteFile(o.out, []byte(report), 0o644); werr != nil {
				fmt.Fprintf(stderr, "bench: --out: %v\n", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

// runBench prepares the machine, runs the selected scenarios each within its
// bound and returns the report: the machine's facts and the table. A failed
// scenario gets a row saying why; the others still run.
func runBench(ctx context.Context, o *options, logw io.Writer) (string, error) {
	h, err := newHarness(ctx, o, logw)
	if err != nil {
		return "", err
	}
	defer h.close()
	facts := machineFacts()
	// The test bed with every bulk user the scenarios need, before the first
	// one: on a fresh machine seeding S6's 10,000 users takes longer than a
	// scenario's bound (up.sh has its own). A failure here is each
	// scenario's again, in its row.
	if users, need := testbedUsers(o); need {
		if err := h.testbed(ctx, users); err != nil {
			h.logf("test bed: %v", err)
		}
	}
	var rows []row
	var failed []string
	for _, name := range o.scenarios {
		if ctx.Err() != nil {
			break
		}
		sctx, cancel := context.WithTimeout(ctx, o.scenarioTimeout)
		t0 := time.Now()
		h.current = name
		h.logf("%s: %s", name, scenarioTitles[name])
		got, err := scenarios[name](sctx, h)
		cancel()
		h.stopAll() // whatever the scenario left running
		rows = append(rows, got...)
		if err != nil {
			failed = append(failed, name)
			h.logf("%s: FAILED after %s: %v", name, time.Since(t0).Round(time.Second), err)
			rows = append(rows, row{scenario: name, load: "failed", note: err.Error()})
			continue
		}
		h.logf("%s: done in %s", name, time.Since(t0).Round(time.Second))
	}
	report := renderReport(facts, h.notes, rows, time.Since(h.started))
	switch {
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled):
		return report, errors.New("interrupted")
	case len(failed) > 0:
		return report, fmt.Errorf("scenarios failed: %s (see the table and the log above)", strings.Join(failed, ", "))
	}
	return report, nil
}

// testbedUsers is how many bulk users the Samba test bed needs for the
// selected scenarios, and whether any of them uses it (S5 does not).
func testbedUsers(o *options) (users int, need bool) {
	for _, name := range o.scenarios {
		switch name {
		case "S5":
		case "S6":
			users, need = max(users, o.samba10k), true
		default:
			users, need = max(users, loginsUsed), true
		}
	}
	return users, need
}
