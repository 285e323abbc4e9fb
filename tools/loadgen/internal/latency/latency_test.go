package latency

import (
	"encoding/json"
	"testing"
)

func TestQuantilesWithinPrecision(t *testing.T) {
	d := New()
	for us := int64(1); us <= 100_000; us++ {
		d.Record(us)
	}
	d.Record(-5) // a clock step counts as 0
	for q, want := range map[float64]int64{0.5: 50_000, 0.9: 90_000, 0.99: 99_000} {
		if got := d.Quantile(q); got < want*999/1000 || got > want*1001/1000 {
			t.Errorf("p%v = %d, want %d ± 0.1 %%", q*100, got, want)
		}
	}
	if d.Quantile(1) < 100_000 || d.Quantile(1) > 100_100 || d.N() != 100_001 {
		t.Errorf("max %d n %d", d.Quantile(1), d.N())
	}
}

func TestTravelsAndMerges(t *testing.T) {
	a, b := New(), New()
	for i := range int64(1000) {
		a.Record(i)
		b.Record(10_000 + i)
	}
	raw, err := json.Marshal(struct{ L *Hist }{a})
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ L *Hist }
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	got.L.Merge(b)
	if s := got.L.Summary(); s.N != 2000 || s.Max < 10.999 || s.Max > 11.01 || s.P50 > 1.0 {
		t.Fatalf("merged summary %+v", s)
	}
	if e := New().Summary(); e.N != 0 || e.Max != 0 || e.P99 != 0 {
		t.Fatalf("empty summary %+v", e)
	}
}
