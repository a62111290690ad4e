package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantilesAreWithinOnePercent(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		draw func() time.Duration
	}{
		{"log-normal around 5ms", func() time.Duration { return time.Duration(5e6 * math.Exp(rng.NormFloat64())) }},
		{"uniform 0 to 100µs", func() time.Duration { return time.Duration(rng.Int64N(100_000)) }},
		{"sub-microsecond", func() time.Duration { return time.Duration(rng.Int64N(300)) }},
		{"a few seconds", func() time.Duration { return time.Duration(rng.Int64N(int64(5 * time.Second))) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			var parts [3]histogram // merged ones must give the same answer
			var all []time.Duration
			for i := range 100_000 {
				d := tt.draw()
				h.record(d)
				parts[i%3].record(d)
				all = append(all, d)
			}
			var merged histogram
			for i := range parts {
				merged.merge(&parts[i])
			}
			slices.Sort(all)
			for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
				exact := all[int(math.Ceil(q*float64(len(all))))-1]
				got := h.quantile(q)
				if diff := math.Abs(float64(got - exact)); diff > 0.01*float64(exact) {
					t.Errorf("q%v = %s, exact %s: off by more than 1%%", q, got, exact)
				}
				if m := merged.quantile(q); m != got {
					t.Errorf("q%v of merged parts %s, of the whole %s", q, m, got)
				}
			}
			if h.max != all[len(all)-1] || h.quantile(1) != h.max {
				t.Errorf("max %s, q1 %s, exact %s", h.max, h.quantile(1), all[len(all)-1])
			}
		})
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Errorf("an empty histogram's median is %s", empty.quantile(0.5))
	}
}

func TestHistogramClampsWhatItCannotHold(t *testing.T) {
	t.Parallel()
	var h histogram
	h.record(-time.Second)
	h.record(time.Hour) // beyond 2^41ns: counted in the last bucket
	if h.n != 2 || h.quantile(0.5) != 0 || h.max != time.Hour || h.quantile(1) > time.Hour {
		t.Errorf("n %d, median %s, max %s, q1 %s", h.n, h.quantile(0.5), h.max, h.quantile(1))
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h histogram
	d := 3 * time.Millisecond
	for b.Loop() {
		h.record(d)
		d += 7
	}
}
