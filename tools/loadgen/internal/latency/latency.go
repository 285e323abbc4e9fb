// Package latency keeps the load generator's latency distributions: HDR histograms of microseconds
// (3 significant digits, up to an hour), filled by each worker process, sent to the parent as their
// compressed encoding and merged there.
package latency

import (
	"encoding/json"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// maxUS is the largest latency kept; longer ones count as this (an hour: nothing real takes longer).
const maxUS = 3_600_000_000

// Hist is one latency distribution in microseconds.
type Hist struct {
	h *hdrhistogram.Histogram
}

// New returns an empty distribution.
func New() *Hist { return &Hist{h: hdrhistogram.New(1, maxUS, 3)} }

// Record adds one latency; negative values (clock steps) count as 0, values past an hour as an hour.
func (d *Hist) Record(us int64) {
	d.h.RecordValue(min(max(us, 0), maxUS)) // cannot fail in range
}

// Merge adds o's counts.
func (d *Hist) Merge(o *Hist) {
	if o != nil {
		d.h.Merge(o.h)
	}
}

// N is how many latencies were recorded.
func (d *Hist) N() int64 { return d.h.TotalCount() }

// Quantile is the q-th quantile (0 ≤ q ≤ 1) in microseconds; the exact maximum for q = 1, 0 when empty.
func (d *Hist) Quantile(q float64) int64 {
	if q >= 1 {
		return d.h.Max()
	}
	return d.h.ValueAtQuantile(q * 100)
}

// MS is a distribution in milliseconds, as reports give it.
type MS struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Summary is the distribution in milliseconds.
func (d *Hist) Summary() MS {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return MS{
		N: d.N(), Mean: d.h.Mean() / 1000,
		P50: ms(d.Quantile(0.50)), P90: ms(d.Quantile(0.90)), P99: ms(d.Quantile(0.99)),
		P999: ms(d.Quantile(0.999)), Max: ms(d.Quantile(1)),
	}
}

// CDF gives the times (ms) by which the given fractions had arrived, for a broadcast's spread.
func (d *Hist) CDF(fractions []float64) []float64 {
	out := make([]float64, len(fractions))
	for i, f := range fractions {
		out[i] = float64(d.Quantile(f)) / 1000
	}
	return out
}

// MarshalJSON sends the distribution compressed, as HdrHistogram's own encoding does.
func (d *Hist) MarshalJSON() ([]byte, error) {
	b, err := d.h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, err
	}
	return json.Marshal(b) // base64 in a JSON string
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (d *Hist) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	h, err := hdrhistogram.Decode(b)
	if err != nil {
		return err
	}
	d.h = h
	return nil
}
