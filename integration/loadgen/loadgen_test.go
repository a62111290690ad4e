package loadgen_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ldapgate/ldapgate/integration/adsim"
	"github.com/ldapgate/ldapgate/integration/loadgen"
	"github.com/ldapgate/ldapgate/integration/testbed"
)

// startDC starts a simulated DC (no lockout: some tests send wrong passwords
// on purpose) and closes it when the test ends.
func startDC(t testing.TB, dcfg adsim.DCConfig) *adsim.DC {
	t.Helper()
	dir, err := adsim.NewDirectory(adsim.Config{Lockout: &adsim.LockoutPolicy{}, LoadUsers: 8})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dir.NewDC(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dc.Close() })
	return dc
}

// baseConfig is a bind load of jdoe against dc.
func baseConfig(dc *adsim.DC) loadgen.Config {
	return loadgen.Config{
		URL:         dc.URL(),
		TLS:         dc.ClientTLSConfig(),
		Mode:        loadgen.ModeBind,
		Logins:      []loadgen.Login{{Name: testbed.JDoe.DN(), Password: testbed.JDoe.Password}},
		Concurrency: 2,
		Count:       20,
		OpTimeout:   10 * time.Second,
	}
}

// searchConfig is a search load as pascom's proxy user.
func searchConfig(dc *adsim.DC, mode loadgen.Mode, logins ...testbed.Account) loadgen.Config {
	cfg := baseConfig(dc)
	cfg.Mode = mode
	cfg.ProxyDN = testbed.Service.UPN()
	cfg.ProxyPassword = testbed.Service.Password
	cfg.BaseDN = testbed.UsersDN
	cfg.Logins = nil
	for _, a := range logins {
		cfg.Logins = append(cfg.Logins, loadgen.Login{Name: a.Login, Password: a.Password})
	}
	return cfg
}

// run runs cfg and fails the test on an error.
func run(t *testing.T, cfg loadgen.Config) loadgen.Result {
	t.Helper()
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkConsistent(t, res)
	return res
}

// checkConsistent checks what holds for every Result.
func checkConsistent(t *testing.T, res loadgen.Result) {
	t.Helper()
	codes, ok, failed := 0, 0, 0
	for _, n := range res.Codes {
		codes += n
	}
	for i, s := range res.Timeline {
		if s.Second != i {
			t.Errorf("timeline[%d] is second %d", i, s.Second)
		}
		ok += s.OK
		failed += s.Failed
	}
	if res.Ops != res.OK+res.Failed || codes != res.Ops || ok != res.OK || failed != res.Failed {
		t.Errorf("counts disagree: ops %d = ok %d + failed %d; codes %v; timeline ok %d failed %d", res.Ops, res.OK, res.Failed, res.Codes, ok, failed)
	}
	if res.Codes[loadgen.CodeSuccess] != res.OK {
		t.Errorf("codes %v, but %d ok", res.Codes, res.OK)
	}
	if want := int((res.Elapsed + time.Second - 1) / time.Second); len(res.Timeline) < want {
		t.Errorf("timeline has %d seconds for %s", len(res.Timeline), res.Elapsed)
	}
	if res.Ops > 0 && !(res.P50 <= res.P90 && res.P90 <= res.P99 && res.P99 <= res.Max && res.P50 > 0) {
		t.Errorf("quantiles out of order: p50 %s p90 %s p99 %s max %s", res.P50, res.P90, res.P99, res.Max)
	}
	for _, e := range res.FirstErrors {
		for _, a := range testbed.Accounts {
			if strings.Contains(e, a.Password) {
				t.Errorf("an error holds %s's password: %s", a.Login, e)
			}
		}
	}
}

func TestRunCountsEveryOutcome(t *testing.T) {
	t.Parallel()
	dc := startDC(t, adsim.DCConfig{})
	tests := []struct {
		name       string
		cfg        func(loadgen.Config) loadgen.Config
		wantCodes  map[string]int
		wantErrFor map[string]string // code → text in its first error
	}{{
		name:      "good binds all succeed",
		cfg:       func(c loadgen.Config) loadgen.Config { return c },
		wantCodes: map[string]int{"0": 20},
	}, {
		name: "logins are used round-robin: a wrong password fails every other bind with 49",
		cfg: func(c loadgen.Config) loadgen.Config {
			c.Logins = append(c.Logins, loadgen.Login{Name: testbed.BJones.DN(), Password: "wrong"})
			return c
		},
		wantCodes:  map[string]int{"0": 10, "49": 10},
		wantErrFor: map[string]string{"49": "data 52e"},
	}, {
		name: "pascom's search-then-bind finds the DN and binds, also an escaped comma and a UTF-8 password",
		cfg: func(loadgen.Config) loadgen.Config {
			return searchConfig(dc, loadgen.ModeSearchThenBind, testbed.JDoe, testbed.SOBrien)
		},
		wantCodes: map[string]int{"0": 20},
	}, {
		name: "search-then-bind counts an unknown login and a disabled account",
		cfg: func(loadgen.Config) loadgen.Config {
			return searchConfig(dc, loadgen.ModeSearchThenBind, testbed.Account{Login: "nobody*", Password: "x"}, testbed.CWhite)
		},
		wantCodes:  map[string]int{loadgen.CodeNoEntry: 10, "49": 10},
		wantErrFor: map[string]string{loadgen.CodeNoEntry: "nobody*", "49": "data 533"},
	}, {
		name: "search-then-bind does not bind when the filter matches more than one entry",
		cfg: func(loadgen.Config) loadgen.Config {
			c := searchConfig(dc, loadgen.ModeSearchThenBind, testbed.JDoe)
			c.Filter = "(|(sAMAccountName=%s)(sAMAccountName=asmith))"
			return c
		},
		wantCodes:  map[string]int{loadgen.CodeAmbiguous: 20},
		wantErrFor: map[string]string{loadgen.CodeAmbiguous: "2 entries"},
	}, {
		name: "searches as the proxy user",
		cfg: func(loadgen.Config) loadgen.Config {
			c := searchConfig(dc, loadgen.ModeSearch, testbed.JDoe, testbed.ASmith)
			c.Attributes = []string{"mail", "telephoneNumber"}
			return c
		},
		wantCodes: map[string]int{"0": 20},
	}, {
		name: "a wrong proxy password fails every search with 49",
		cfg: func(loadgen.Config) loadgen.Config {
			c := searchConfig(dc, loadgen.ModeSearch, testbed.JDoe)
			c.ProxyPassword = "wrong"
			return c
		},
		wantCodes:  map[string]int{"49": 20},
		wantErrFor: map[string]string{"49": "bind as the proxy"},
	}, {
		name: "a CA that did not sign the server's certificate fails every dial with tls",
		cfg: func(c loadgen.Config) loadgen.Config {
			c.TLS = &tls.Config{RootCAs: x509.NewCertPool(), ServerName: dc.HostName()}
			return c
		},
		wantCodes:  map[string]int{loadgen.CodeTLS: 20},
		wantErrFor: map[string]string{loadgen.CodeTLS: "certificate"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.cfg(baseConfig(dc)))
			if fmt.Sprint(res.Codes) != fmt.Sprint(tt.wantCodes) {
				t.Errorf("codes %v, want %v (first errors %v)", res.Codes, tt.wantCodes, res.FirstErrors)
			}
			for code, text := range tt.wantErrFor {
				if !strings.Contains(res.FirstErrors[code], text) {
					t.Errorf("first error for %s is %q, want it to say %q", code, res.FirstErrors[code], text)
				}
			}
			if res.OK > 0 && res.Throughput <= 0 {
				t.Errorf("throughput %f with %d ok", res.Throughput, res.OK)
			}
		})
	}
}

func TestRunReusesConnectionsUnlessToldNot(t *testing.T) {
	t.Parallel()
	for _, perOp := range []bool{false, true} {
		t.Run(fmt.Sprintf("new connection per operation %v", perOp), func(t *testing.T) {
			t.Parallel()
			dc := startDC(t, adsim.DCConfig{})
			cfg := baseConfig(dc)
			cfg.Concurrency, cfg.Count, cfg.NewConnPerOp = 3, 30, perOp
			res := run(t, cfg)
			want := int64(3)
			if perOp {
				want = 30
			}
			if got := dc.Stats().Handshakes; got != want || res.OK != 30 {
				t.Errorf("%d ok with %d TLS handshakes, want 30 with %d", res.OK, got, want)
			}
		})
	}
}

func TestRunForADuration(t *testing.T) {
	t.Parallel()
	dc := startDC(t, adsim.DCConfig{Plain: true})
	cfg := baseConfig(dc)
	cfg.Count, cfg.Duration = 0, 1500*time.Millisecond
	res := run(t, cfg)
	if res.Elapsed != cfg.Duration || len(res.Timeline) != 2 || res.Timeline[0].OK == 0 || res.Timeline[1].OK == 0 {
		t.Errorf("a 1.5s run: elapsed %s, timeline %v", res.Elapsed, res.Timeline)
	}
	// Count and duration: the count comes first.
	cfg.Count, cfg.Duration = 10, time.Minute
	if res := run(t, cfg); res.Ops != 10 || res.Elapsed >= time.Minute {
		t.Errorf("count 10 within a minute: %d ops in %s", res.Ops, res.Elapsed)
	}
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunShowsAnOutageInTheTimeline(t *testing.T) {
	t.Parallel()
	dc := startDC(t, adsim.DCConfig{Plain: true})
	cfg := baseConfig(dc)
	cfg.Count, cfg.Duration = 0, 3*time.Second
	done := make(chan loadgen.Result, 1)
	go func() {
		res, err := loadgen.Run(context.Background(), cfg)
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- res
	}()
	waitFor(t, "100 binds", func() bool { return dc.Stats().Binds >= 100 })
	_ = dc.Stop()
	res := <-done
	checkConsistent(t, res)
	last := res.Timeline[len(res.Timeline)-1]
	if res.Timeline[0].OK == 0 || last.OK != 0 || last.Failed == 0 || res.Codes[loadgen.CodeNetwork] == 0 {
		t.Errorf("a DC stopped within the first second of a 3s run: timeline %v, codes %v", res.Timeline, res.Codes)
	}
}

func TestRunTimesOutOperations(t *testing.T) {
	t.Parallel()
	dc := startDC(t, adsim.DCConfig{Plain: true})
	dc.SetDrop(true)
	cfg := baseConfig(dc)
	cfg.Count, cfg.OpTimeout = 4, 100*time.Millisecond
	res := run(t, cfg)
	if res.Codes[loadgen.CodeTimeout] != 4 || res.P50 < 100*time.Millisecond {
		t.Errorf("binds to a DC that never answers, 100ms timeout: codes %v, p50 %s", res.Codes, res.P50)
	}
}

func TestRunStopsWhenCancelled(t *testing.T) {
	t.Parallel()
	dc := startDC(t, adsim.DCConfig{Plain: true})
	dc.SetDrop(true)
	cfg := baseConfig(dc)
	cfg.OpTimeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		res loadgen.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loadgen.Run(ctx, cfg)
		done <- outcome{res, err}
	}()
	waitFor(t, "the binds to arrive", func() bool { return dc.Stats().Binds >= 2 })
	cancel()
	select {
	case o := <-done:
		if !errors.Is(o.err, context.Canceled) || o.res.Ops != 0 {
			t.Errorf("cancelled with two binds in flight: %d ops, error %v; want 0 ops (abandoned) and context.Canceled", o.res.Ops, o.err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of its context's cancellation")
	}
}

func TestConfigIsValidated(t *testing.T) {
	t.Parallel()
	dc := startDC(t, adsim.DCConfig{})
	tests := []struct {
		name   string
		change func(*loadgen.Config)
		want   string
	}{
		{"no url", func(c *loadgen.Config) { c.URL = "" }, "url: empty"},
		{"an http url", func(c *loadgen.Config) { c.URL = "http://x" }, `scheme "http"`},
		{"starttls on ldaps", func(c *loadgen.Config) { c.StartTLS = true }, "already TLS"},
		{"no verification", func(c *loadgen.Config) { c.TLS = &tls.Config{InsecureSkipVerify: true} }, "InsecureSkipVerify is refused"},
		{"an unknown mode", func(c *loadgen.Config) { c.Mode = "modify" }, `mode "modify": unknown; use one of bind, search-then-bind, search`},
		{"no logins", func(c *loadgen.Config) { c.Logins = nil }, "logins: none"},
		{"an empty password", func(c *loadgen.Config) { c.Logins = []loadgen.Login{{Name: "jdoe"}} }, "login 1 (jdoe): empty password"},
		{"no concurrency", func(c *loadgen.Config) { c.Concurrency = 0 }, "concurrency 0: must be between 1 and 100000"},
		{"unbounded", func(c *loadgen.Config) { c.Count, c.Duration = 0, 0 }, "neither a duration nor a count"},
		{"a search without a proxy", func(c *loadgen.Config) { c.Mode, c.BaseDN = loadgen.ModeSearch, "dc=x" }, "the proxy DN and its password are required"},
		{"a search without a base", func(c *loadgen.Config) {
			c.Mode, c.ProxyDN, c.ProxyPassword = loadgen.ModeSearchThenBind, "svc", "pw"
		}, "the base DN is required"},
		{"a filter without %s", func(c *loadgen.Config) {
			c.Mode, c.ProxyDN, c.ProxyPassword, c.BaseDN, c.Filter = loadgen.ModeSearch, "svc", "pw", "dc=x", "(uid=jdoe)"
		}, "has 0 %s, needs exactly one"},
		{"a filter that does not parse", func(c *loadgen.Config) {
			c.Mode, c.ProxyDN, c.ProxyPassword, c.BaseDN, c.Filter = loadgen.ModeSearch, "svc", "pw", "dc=x", "(uid=%s"
		}, `filter "(uid=%s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig(dc)
			cfg.Logins = []loadgen.Login{{Name: "jdoe", Password: "secret-pw"}}
			tt.change(&cfg)
			_, err := loadgen.Run(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret-pw") || strings.Contains(err.Error(), "\"pw\"") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
	if got := dc.Stats().Connections; got != 0 {
		t.Errorf("invalid configurations made %d connections", got)
	}
}
