package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/heraldpush/herald/tools/loadgen/internal/latency"
)

// writeText prints a load phase's findings.
func (lr *loadReport) writeText(w io.Writer) {
	switch lr.Mode {
	case modePush:
		fmt.Fprintf(w, "  push     %d callers, %d uid(s) per call, %d connections, %.1f s measured from %s\n",
			lr.Callers, lr.UIDsPerCall, lr.Conns, lr.Seconds, lr.Start.Format("15:04:05.000"))
		fmt.Fprintf(w, "           calls %d (%.0f/s), errors: %s; call latency %s\n",
			lr.Calls, lr.CallsPerSec, formatCounts(lr.CallErrors), latencyText(*lr.CallLatency))
		fmt.Fprintf(w, "           delivered (API answers) %d, received %d = %.0f/s; never received %d; uids not delivered %d\n",
			lr.Delivered, lr.Received, lr.PerSecond, lr.MissingFrames, lr.NotDelivered)
		fmt.Fprintf(w, "           push call → receipt %s\n", latencyText(lr.Latency))
	case modeBroadcast:
		fmt.Fprintf(w, "  broadcast %d broadcasts to %d connections (ms from the call's start; fractions %s)\n",
			len(lr.Broadcasts), lr.Conns, fractionsText())
		for i, b := range lr.Broadcasts {
			fmt.Fprintf(w, "           #%d call %.1f ms, delivered %d%s, received %d, missing %d; time to last %.1f ms; by fraction %s\n",
				i+1, b.CallMS, b.Delivered, errText(b.Err), b.Received, b.Missing, b.Latency.Max, msList(b.Quantiles))
		}
	case modeRoom:
		fmt.Fprintf(w, "  room     %d published in %.1f s (%.0f/s) into %d room(s) of %d connections, errors: %s\n",
			lr.Published, lr.Seconds, float64(lr.Published)/lr.Seconds, lr.Rooms, lr.Conns, formatCounts(lr.CallErrors))
		fmt.Fprintf(w, "           frames %d = %.2f per connection per second, %.1f MB/s; sampled %d connections received %d of %d messages (%.2f %%)\n",
			lr.RoomFrames, lr.FramesPerConnS, float64(lr.RoomBytes)/lr.Seconds/1e6, lr.Sampled, lr.Received, lr.SampleExpected, 100*float64(lr.Received)/float64(max(1, lr.SampleExpected)))
		fmt.Fprintf(w, "           publish → receipt (sampled) %s\n", latencyText(lr.Latency))
	case modeUpstream:
		rate := "unpaced"
		if lr.UpRate > 0 {
			rate = fmt.Sprintf("≤ %g/s each", lr.UpRate)
		}
		fmt.Fprintf(w, "  upstream %d connections, window %d, %s, %.1f s measured from %s\n",
			lr.Conns, lr.Window, rate, lr.Seconds, lr.Start.Format("15:04:05.000"))
		fmt.Fprintf(w, "           sent %d in the window (%d in all); acked %d = %.0f/s; error frames: %s\n",
			lr.UpSentInWindow, lr.UpSent, lr.Received, lr.PerSecond, formatCounts(lr.UpErrors))
		fmt.Fprintf(w, "           up → up_ack %s\n", latencyText(lr.Latency))
	}
	if lr.PollWait > 0 {
		fmt.Fprintf(w, "           (workers look for frames every %.1f ms: receipts are stamped up to that late)\n", lr.PollWait)
	}
	if len(lr.Timeline) > 0 {
		fmt.Fprintf(w, "           per second: %s\n", intList(lr.Timeline))
	}
	fmt.Fprintf(w, "           out of the window %d; other frames: %s; open after %d; ended during: %s\n",
		lr.OutOfWindow, formatCounts(lr.OtherFrames), lr.OpenAfter, formatCounts(lr.LostDuring))
	lr.CPU.WriteText(w)
	names := make([]string, 0, len(lr.Metrics))
	for n := range lr.Metrics {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, deltaText(lr.Metrics[n]))
	}
}

func latencyText(l latency.MS) string {
	return fmt.Sprintf("p50 %.2f ms, p90 %.2f, p99 %.2f, p99.9 %.2f, max %.2f (mean %.2f, n %d)",
		l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean, l.N)
}

func fractionsText() string {
	parts := make([]string, len(broadcastFractions))
	for i, f := range broadcastFractions {
		parts[i] = fmt.Sprintf("%g%%", f*100)
	}
	return strings.Join(parts, "/")
}

func msList(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.1f", x)
	}
	return strings.Join(parts, "/")
}

func intList(v []int64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, " ")
}

func errText(e string) string {
	if e == "" {
		return ""
	}
	return " (" + e + ")"
}

// deltaText shows a source's counters as after − before, and gauges (threads, goroutines, heap,
// connections) as their value after.
func deltaText(d metricDelta) string {
	keys := make([]string, 0, len(d.After))
	for k := range d.After {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		a := d.After[k]
		short := strings.NewReplacer("herald_", "", "_total", "", "go_gc_duration_seconds_count", "GCs", "go_memstats_", "").Replace(k)
		if isGauge(k) {
			parts = append(parts, fmt.Sprintf("%s %.0f", short, a))
			continue
		}
		b, ok := d.Before[k]
		if !ok {
			continue
		}
		if strings.HasSuffix(k, "_seconds_total") {
			parts = append(parts, fmt.Sprintf("%s %+.2f", short, a-b))
		} else if a != b {
			parts = append(parts, fmt.Sprintf("%s %+.0f", short, a-b))
		}
	}
	return strings.Join(parts, ", ")
}

func isGauge(name string) bool {
	for _, g := range []string{"go_goroutines", "go_threads", "go_memstats_heap_alloc_bytes", "herald_ws_connections"} {
		if name == g {
			return true
		}
	}
	return false
}
