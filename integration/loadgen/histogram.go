package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// The latency histogram is log-linear: values below subBuckets nanoseconds
// have a bucket each; above, every power of two is split into subBuckets
// buckets of equal width. A bucket is then at most 1/subBuckets of its lower
// bound wide, and reporting its midpoint is off by at most half that: 0.78%
// with 64 sub-buckets. Its size is fixed (histogramBuckets counters, 18 KiB)
// whatever the number of operations.
const (
	subBucketBits = 6
	subBuckets    = 1 << subBucketBits
	// maxExponent is the largest power of two tracked: 2^40 ns is 18 minutes,
	// longer than any operation timeout; longer values count as that.
	maxExponent      = 40
	histogramBuckets = subBuckets + (maxExponent-subBucketBits+1)*subBuckets
	maxTracked       = 1<<(maxExponent+1) - 1
)

// histogram counts durations with at most 1% error in bounded memory. It is
// not safe for concurrent use: Run keeps one per shard under the shard's lock.
type histogram struct {
	counts [histogramBuckets]uint64
	n      uint64
	max    time.Duration // exact
}

// bucketOf returns the index of the bucket that holds v nanoseconds.
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	if v > maxTracked {
		v = maxTracked
	}
	exp := bits.Len64(v) - 1 // v is in [2^exp, 2^(exp+1))
	shift := exp - subBucketBits
	sub := int(v>>shift) & (subBuckets - 1)
	return subBuckets + shift*subBuckets + sub
}

// bucketMid returns the middle of bucket i in nanoseconds.
func bucketMid(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := (i - subBuckets) / subBuckets
	sub := uint64((i-subBuckets)%subBuckets) + subBuckets
	lower := sub << shift
	return lower + (uint64(1)<<shift)/2
}

// record counts one duration; negative durations count as 0.
func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(uint64(max(d, 0)))]++
	h.n++
	h.max = max(h.max, d)
}

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1) by nearest rank: the smallest
// recorded value with at least q of all values at or below it, within 1%. It
// is 0 for an empty histogram; the largest value recorded, exactly, for q 1.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	if rank == h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketMid(i)), h.max)
		}
	}
	return h.max
}
