package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// row is one line of the table.
type row struct {
	scenario string // S1...S7
	load     string // what ran, in a few words
	gw, base string // the gateway's figure and the baseline's
	ratio    string // gateway ÷ baseline (or the figure the target is about)
	target   string
	verdict  string // PASS, MISS, or "" when there is no target
	gwLat    string // the gateway's p50 / p99
	baseLat  string // the baseline's p50 / p99
	gwRSS    string // peak RSS of the gateway's process (or what was measured)
	baseRSS  string // peak RSS of the baseline's process where the bench runs it
	note     string // a failure, or what a figure means
}

// verdict is PASS when ok, else MISS.
func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// facts are the machine's facts above the table.
type facts struct {
	date, cpu, kernel, goVersion, load string
	nproc                              int
}

func machineFacts() facts {
	f := facts{
		date:      time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		nproc:     runtime.NumCPU(),
		goVersion: runtime.Version(),
		cpu:       "unknown",
		kernel:    "unknown",
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		_, _ = fmt.Sscan(string(out), &f.nproc)
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				f.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		f.kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) >= 3 {
			f.load = strings.Join(fields[:3], " ")
		}
	}
	return f
}

// renderReport is the machine's facts, the table and the notes, as markdown.
func renderReport(f facts, notes []string, rows []row, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## ldapgate benchmark, %s\n\n", f.date)
	fmt.Fprintf(&b, "- machine: %d CPUs (nproc), %s; kernel %s; %s; load average at the start %s\n", f.nproc, f.cpu, f.kernel, f.goVersion, f.load)
	fmt.Fprintf(&b, "- the whole run took %s\n\n", took.Round(time.Second))
	b.WriteString("| # | load | gateway | baseline | ratio | target | result | gateway p50 / p99 | baseline p50 / p99 | peak RSS gateway | peak RSS baseline |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		cells := []string{r.scenario, r.load, r.gw, r.base, r.ratio, r.target, r.verdict, r.gwLat, r.baseLat, r.gwRSS, r.baseRSS}
		for i, c := range cells {
			if c == "" {
				c = "–"
			}
			cells[i] = strings.ReplaceAll(c, "|", "\\|")
		}
		fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
	}
	var all []string
	for _, r := range rows {
		if r.note != "" {
			all = append(all, fmt.Sprintf("%s (%s): %s", r.scenario, r.load, r.note))
		}
	}
	all = append(all, notes...)
	if len(all) > 0 {
		b.WriteString("\n")
		for _, n := range all {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(n, "\n", " "))
		}
	}
	return b.String()
}

// --- number formats -------------------------------------------------------------

// fmtRate is operations per second.
func fmtRate(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%s/s", group(int64(v+0.5)))
	}
	return fmt.Sprintf("%.1f/s", v)
}

// group writes n with thousands separators.
func group(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// fmtDur is a latency or a run time with 2–3 significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// fmtLat is "p50 / p99".
func fmtLat(m measured) string { return fmtDur(m.p50) + " / " + fmtDur(m.p99) }

// fmtMB is a memory size in MB.
func fmtMB(n int64) string {
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f MB", float64(n)/(1<<20))
}

// fmtRatio is a ratio with two decimals.
func fmtRatio(v float64) string { return fmt.Sprintf("%.2f", v) }
