package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/heraldpush/herald/tools/loadgen/internal/proccpu"
)

// report is everything one run found, printed as text and optionally as JSON.
type report struct {
	Date      string   `json:"date"`
	GoVersion string   `json:"go_version"`
	Args      []string `json:"args"`
	Conns     int      `json:"conns"`
	Procs     int      `json:"procs"`
	Sources   []string `json:"sources"`
	Targets   []string `json:"targets"` // node ids, or "auth" for the node auth names
	UIDs      int      `json:"uids"`
	Ping      string   `json:"ping"`
	Mode      string   `json:"mode"`

	Mint        phase          `json:"mint"`
	Connect     phase          `json:"connect"`
	Latency     latencySummary `json:"connect_latency_ms"`
	HoldSeconds float64        `json:"hold_seconds"`
	OpenAtStop  int            `json:"open_at_stop"`
	Lost        map[string]int `json:"lost_while_held,omitempty"`

	Nodes []nodeReport `json:"nodes"`

	// Load is what a load mode measured (nil in idle mode).
	Load *loadReport `json:"load,omitempty"`
	// IdleCPU is what the held connections cost from the first sample to the last (idle mode, with
	// at least two samples).
	IdleCPU *proccpu.Report `json:"idle_cpu,omitempty"`
}

// phase is minting or connecting: how many succeeded, how they failed, how long it took.
type phase struct {
	Done      int            `json:"done"`
	Failures  map[string]int `json:"failures,omitempty"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"per_second"`
}

func (p *phase) rate() {
	if p.Seconds > 0 {
		p.PerSecond = float64(p.Done) / p.Seconds
	}
}

// latencySummary is the time from starting a TCP connect to having read the welcome frame.
type latencySummary struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// nodeReport is one push-server before and after, and what the growth comes to per connection.
type nodeReport struct {
	ID      string   `json:"id"`
	Before  sample   `json:"before"`
	Samples []sample `json:"samples"`

	// From the last sample that answered: connections added, and RSS and heap growth per
	// connection added.
	ConnsAdded  int     `json:"conns_added"`
	RSSPerConn  float64 `json:"rss_bytes_per_conn"`
	HeapPerConn float64 `json:"heap_bytes_per_conn"`
}

// finish computes the per-connection figures from the last good sample of each node.
func (r *report) finish() {
	for i := range r.Nodes {
		n := &r.Nodes[i]
		for j := len(n.Samples) - 1; j >= 0; j-- {
			s := n.Samples[j]
			if s.Err != "" {
				continue
			}
			n.ConnsAdded = s.Stats.Connections - n.Before.Stats.Connections
			n.RSSPerConn = perConn(n.Before.Stats.RSSBytes, s.Stats.RSSBytes, n.ConnsAdded)
			n.HeapPerConn = perConn(n.Before.Stats.HeapBytes, s.Stats.HeapBytes, n.ConnsAdded)
			break
		}
	}
}

func (r *report) write(jsonOut string, stdout, stderr io.Writer) error {
	text := stdout
	if jsonOut == "-" {
		text = stderr
	}
	r.writeText(text)
	if jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if jsonOut == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(jsonOut, b, 0o644)
}

func (r *report) writeText(w io.Writer) {
	fmt.Fprintf(w, "loadgen %s (%s): %d connections to %s from %d processes and %d source addresses (%s–%s), ping %s\n",
		r.Date, r.GoVersion, r.Conns, strings.Join(r.Targets, ", "), r.Procs, len(r.Sources),
		r.Sources[0], r.Sources[len(r.Sources)-1], r.Ping)
	fmt.Fprintf(w, "  tokens   %d in %.1fs (%.0f/s), failures: %s\n",
		r.Mint.Done, r.Mint.Seconds, r.Mint.PerSecond, formatCounts(r.Mint.Failures))
	fmt.Fprintf(w, "  connect  %d open in %.1fs (%.0f/s), failures: %s\n",
		r.Connect.Done, r.Connect.Seconds, r.Connect.PerSecond, formatCounts(r.Connect.Failures))
	fmt.Fprintf(w, "           connect+upgrade+welcome p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max)
	fmt.Fprintf(w, "  held     %.0fs; open at the end %d; ended while held: %s\n", r.HoldSeconds, r.OpenAtStop, formatCounts(r.Lost))
	if r.Load != nil {
		r.Load.writeText(w)
	}
	if r.IdleCPU != nil {
		fmt.Fprintf(w, "  idle     from the first sample to the last, the connections only heartbeating:\n")
		r.IdleCPU.WriteText(w)
	}
	for _, n := range r.Nodes {
		fmt.Fprintf(w, "  %-8s before     %s\n", n.ID, statsLine(n.Before))
		for _, s := range n.Samples {
			fmt.Fprintf(w, "  %-8s +%-9s %s\n", "", s.After, sampleLine(n.Before, s))
		}
		if n.ConnsAdded > 0 {
			fmt.Fprintf(w, "  %-8s => RSS %.0f B per connection, heap %.0f B per connection (%d connections added)\n",
				"", n.RSSPerConn, n.HeapPerConn, n.ConnsAdded)
		}
	}
}

func statsLine(s sample) string {
	if s.Err != "" {
		return "error: " + s.Err
	}
	return fmt.Sprintf("%d conns, %d users, RSS %s, heap %s, %d goroutines",
		s.Stats.Connections, s.Stats.Users, mib(float64(s.Stats.RSSBytes)), mib(float64(s.Stats.HeapBytes)), s.Stats.Goroutines)
}

// sampleLine is a sample and its growth over before, per connection added; with the runtime's
// gauges it also says where the growth went.
func sampleLine(before, s sample) string {
	if s.Err != "" {
		return "error: " + s.Err
	}
	line := statsLine(s)
	added := s.Stats.Connections - before.Stats.Connections
	if added <= 0 {
		return line
	}
	line += fmt.Sprintf("; per connection: RSS %+.0f B, heap %+.0f B",
		perConn(before.Stats.RSSBytes, s.Stats.RSSBytes, added), perConn(before.Stats.HeapBytes, s.Stats.HeapBytes, added))
	if len(s.Runtime) > 0 && len(before.Runtime) > 0 {
		d := func(name string) float64 { return (s.Runtime[name] - before.Runtime[name]) / float64(added) }
		line += fmt.Sprintf(" (heap in use %+.0f, idle not released %+.0f, stacks %+.0f, spans %+.0f; GCs %+.0f)",
			d("go_memstats_heap_inuse_bytes"),
			d("go_memstats_heap_idle_bytes")-d("go_memstats_heap_released_bytes"),
			d("go_memstats_stack_inuse_bytes"), d("go_memstats_mspan_inuse_bytes"),
			s.Runtime["go_gc_duration_seconds_count"]-before.Runtime["go_gc_duration_seconds_count"])
	}
	return line
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
