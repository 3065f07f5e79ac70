package loadgen

import (
	"math/bits"
	"time"
)

// The latency histogram is log-linear: subBuckets linear buckets per power of
// two of nanoseconds, so a quantile is within 1/subBuckets (~1.6%) of the
// truth, and memory is fixed (~30 KiB) however long the run.
const (
	subBits    = 6
	subBuckets = 1 << subBits
	numBuckets = (64 - subBits + 1) * subBuckets
)

type histogram struct {
	counts [numBuckets]int64
	total  int64
}

func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // v>>shift is in [subBuckets, 2*subBuckets)
	return (shift+1)*subBuckets + int(v>>shift) - subBuckets
}

// lowerBound is the smallest value of bucket i.
func lowerBound(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	return uint64(i%subBuckets+subBuckets) << shift
}

func (h *histogram) record(d time.Duration) {
	h.counts[bucketOf(uint64(max(d, 0)))]++
	h.total++
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// quantile returns the lower bound of the bucket holding quantile q, 0 when empty.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := int64(q*float64(h.total-1)) + 1 // 1-based rank of the wanted sample
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(lowerBound(i))
		}
	}
	return time.Duration(lowerBound(numBuckets - 1))
}
