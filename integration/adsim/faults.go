package adsim

import (
	"fmt"
	"sync/atomic"
	"time"
)

// faults are the switchable misbehaviours of one DC. Every field is atomic so
// tests can flip them while clients run.
type faults struct {
	delay atomic.Int64 // nanoseconds added before every response
	drop  atomic.Bool  // read requests, answer none
	// cutAfter is the number of entries a search may send before the relay closes
	// the connection instead of sending more; negative means off.
	cutAfter atomic.Int64
	cutBind  atomic.Bool // close the connection instead of sending a bind response
	// failNext packs the result code (high 32 bits) and how many operations are
	// left to fail with it (low 32 bits), so that both change together.
	failNext atomic.Uint64
}

// SetDelay makes the DC wait d before it answers each operation (binds and
// searches are still carried out at once: a client that times out may have
// changed the directory). Zero turns the delay off. A Stop ends pending delays.
func (dc *DC) SetDelay(d time.Duration) { dc.faults.delay.Store(int64(d)) }

// SetDrop makes the DC read requests and answer none, like a hung server; the
// requests are counted (Stats, AccountBinds) but not carried out.
func (dc *DC) SetDrop(on bool) { dc.faults.drop.Store(on) }

// CutSearchAfter makes the DC close the connection after sending k entries of
// any search, before the rest of its entries and its final result: a response
// cut in the middle. Negative k turns it off.
func (dc *DC) CutSearchAfter(k int) { dc.faults.cutAfter.Store(int64(k)) }

// CutBeforeBindResponse makes the DC close the connection instead of sending a
// bind response. The bind is carried out first (it counts against lockout), as
// when a DC fails after doing the work.
func (dc *DC) CutBeforeBindResponse(on bool) { dc.faults.cutBind.Store(on) }

// FailNext makes the next n operations (binds, searches, writes, in any order)
// fail with LDAP result code without being carried out, e.g. 51 busy or 52
// unavailable. It replaces failures still pending; n 0 cancels them.
func (dc *DC) FailNext(n int, code int) error {
	if n < 0 || n > 1<<31 || code <= 0 || code > 1<<15 {
		return fmt.Errorf("fail next: n %d or code %d out of range", n, code)
	}
	dc.faults.failNext.Store(uint64(code)<<32 | uint64(n))
	return nil
}

// ClearFaults turns every fault off (refusing connections is SetRefuse's).
func (dc *DC) ClearFaults() {
	dc.faults.delay.Store(0)
	dc.faults.drop.Store(false)
	dc.faults.cutAfter.Store(-1)
	dc.faults.cutBind.Store(false)
	dc.faults.failNext.Store(0)
}

// takeFailure consumes one pending FailNext failure and returns its code.
func (f *faults) takeFailure() (int, bool) {
	for {
		v := f.failNext.Load()
		if v&0xffffffff == 0 {
			return 0, false
		}
		if f.failNext.CompareAndSwap(v, v-1) {
			return int(v >> 32), true
		}
	}
}

// wait sleeps the configured delay, or less when the DC stops.
func (dc *DC) wait(stop <-chan struct{}) {
	d := time.Duration(dc.faults.delay.Load())
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}
