package main

import "math/bits"

// hist counts latencies in microseconds without keeping every sample: exact below 1,024 µs, then 512
// buckets per power of two, so a percentile read from it is at most 0.2 % below the true value. Workers
// fill one each and the parent merges them. The zero value is empty and ready to use.
type hist struct {
	counts []int64 // by bucket index; allocated on the first record
	n      int64
	max    int64
	sum    int64
}

const (
	histExact   = 1024 // values below this have a bucket each
	histSubBits = 9    // 2^9 = 512 buckets per power of two above that
	histSub     = 1 << histSubBits
	histBuckets = histExact + 54*histSub // up to 2^63
)

// histBucket is the bucket of v (µs, ≥ 0).
func histBucket(v int64) int {
	if v < histExact {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - histSubBits - 1 // v >> e lies in [512, 1023]
	return histExact + (e-1)*histSub + int(v>>e) - histSub
}

// histLow is the smallest value that falls into bucket i.
func histLow(i int) int64 {
	if i < histExact {
		return int64(i)
	}
	i -= histExact
	e := i/histSub + 1
	return int64(i%histSub+histSub) << e
}

// record adds one latency of us microseconds; negative values (clock steps) count as 0.
func (h *hist) record(us int64) {
	if us < 0 {
		us = 0
	}
	if h.counts == nil {
		h.counts = make([]int64, histBuckets)
	}
	h.counts[histBucket(us)]++
	h.n++
	h.sum += us
	h.max = max(h.max, us)
}

// merge adds o's counts to h.
func (h *hist) merge(o *hist) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]int64, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile is the q-th quantile (0 ≤ q ≤ 1) by the nearest-rank method, as the lower bound of its
// bucket (the exact maximum for q = 1); 0 when empty.
func (h *hist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := int64(q*float64(h.n)+0.999999) - 1 // 0-based, as percentile does
	rank = min(max(rank, 0), h.n-1)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			return min(histLow(i), h.max)
		}
	}
	return h.max
}

func (h *hist) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return float64(h.sum) / float64(h.n)
}

// wireHist is a hist as it travels from a worker to the parent: only the buckets in use.
type wireHist struct {
	Buckets [][2]int64 `json:"buckets"` // [bucket index, count]
	N       int64      `json:"n"`
	Max     int64      `json:"max"`
	Sum     int64      `json:"sum"`
}

func (h *hist) wire() *wireHist {
	w := &wireHist{N: h.n, Max: h.max, Sum: h.sum}
	for i, c := range h.counts {
		if c != 0 {
			w.Buckets = append(w.Buckets, [2]int64{int64(i), c})
		}
	}
	return w
}

// unwire turns w back into a hist; buckets out of range are dropped.
func (w *wireHist) unwire() *hist {
	h := &hist{}
	if w == nil || w.N == 0 {
		return h
	}
	h.counts = make([]int64, histBuckets)
	for _, b := range w.Buckets {
		if b[0] >= 0 && b[0] < histBuckets {
			h.counts[b[0]] += b[1]
		}
	}
	h.n, h.max, h.sum = w.N, w.Max, w.Sum
	return h
}

// latencyMS is a latency distribution in milliseconds, as reports give it.
type latencyMS struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

func (h *hist) summary() latencyMS {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return latencyMS{
		N: h.n, Mean: h.mean() / 1000,
		P50: ms(h.quantile(0.50)), P90: ms(h.quantile(0.90)), P99: ms(h.quantile(0.99)),
		P999: ms(h.quantile(0.999)), Max: ms(h.max),
	}
}

// cdfPoints are the times (ms) by which the given fractions had arrived, for a broadcast's spread.
func (h *hist) cdfPoints(fractions []float64) []float64 {
	out := make([]float64, len(fractions))
	for i, f := range fractions {
		out[i] = float64(h.quantile(f)) / 1000
	}
	return out
}
