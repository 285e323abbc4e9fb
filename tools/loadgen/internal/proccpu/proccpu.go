// Package proccpu says where the CPU went during a load phase, without a profiler: the user+system
// time and context switches of each watched process (the local stack's, the load generator's own),
// from /proc/<pid>/stat and task status files before and after, and the whole machine's busy time
// from /proc/stat. The load generator shares the cores with the servers, and other people's work may
// too; these figures say how much of each there was.
package proccpu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on every Linux architecture Go runs on).
const clockTicks = 100

// procTicks reads utime+stime (clock ticks) from the contents of /proc/<pid>/stat.
func procTicks(stat []byte) (uint64, error) {
	// The command name (field 2) is in parentheses and may hold spaces or parentheses itself; the
	// fields after the last ')' start with field 3 (state).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("stat: too few fields")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, errors.New("stat: bad utime or stime")
	}
	return utime + stime, nil
}

// machineTicks reads the clock ticks of all CPUs from the contents of /proc/stat: busy (user, nice,
// system, irq, softirq), steal (time the hypervisor gave the virtual CPUs to someone else) and the
// total with idle and iowait. Softirq (part of busy) is mostly the loopback network's packet work;
// on the measured machine the processes' own times include it (it runs in their system calls). Guest time is already inside user time and not added again.
func machineTicks(stat []byte) (busy, softirq, steal, total uint64, err error) {
	line, _, _ := bytes.Cut(stat, []byte{'\n'})
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, 0, 0, errors.New("/proc/stat: no cpu line")
	}
	for i, s := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += v
		switch i {
		case 3, 4:
		case 7:
			steal += v
		case 6:
			softirq += v
			busy += v
		default:
			busy += v
		}
	}
	return busy, softirq, steal, total, nil
}

// Proc is one process whose CPU time is followed.
type Proc struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Mine bool   `json:"loadgen"` // loadgen's parent or one of its workers
}

// StackProcs lists the local stack's processes from stack.json's pids (name → pid), sorted by name.
func StackProcs(pids map[string]int) []Proc {
	out := make([]Proc, 0, len(pids))
	for name, pid := range pids {
		if pid > 0 {
			out = append(out, Proc{Name: name, PID: pid})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ctxSwitches adds up the voluntary and involuntary context switches in the contents of a
// /proc/<pid>/task/<tid>/status file.
func ctxSwitches(status []byte) uint64 {
	var n uint64
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
			continue
		}
		if x, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			n += x
		}
	}
	return n
}

// procSwitches is the context switches of every thread of pid so far (threads that ended are not
// counted, which matters little for the long-lived threads of a Go server).
func procSwitches(pid int) uint64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var n uint64
	for _, t := range tasks {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name())); err == nil {
			n += ctxSwitches(b)
		}
	}
	return n
}

// Snapshot is the CPU time of the watched processes and of the machine at one moment.
type Snapshot struct {
	switches map[int]uint64 // pid → context switches
	procs    map[int]uint64 // pid → ticks
	busy     uint64
	softirq  uint64
	steal    uint64
	total    uint64
	readErr  error
}

func Take(procs []Proc) Snapshot {
	s := Snapshot{procs: map[int]uint64{}, switches: map[int]uint64{}}
	for _, p := range procs {
		s.switches[p.PID] = procSwitches(p.PID)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
		if err != nil {
			continue
		}
		if t, err := procTicks(b); err == nil {
			s.procs[p.PID] = t
		}
	}
	b, err := os.ReadFile("/proc/stat")
	if err == nil {
		s.busy, s.softirq, s.steal, s.total, err = machineTicks(b)
	}
	s.readErr = err
	return s
}

// Use is one process's share of the CPU over a phase.
type Use struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"cpu_seconds"`
	Cores   float64 `json:"cores"` // average cores busy: CPU seconds / wall seconds
	Loadgen bool    `json:"loadgen,omitempty"`
	// Switches is the context switches of its threads per second: each is a wake-up or a
	// preemption, which costs far more than the work between them when messages are small.
	Switches float64 `json:"ctx_switches_per_second"`
}

// Report is where the CPU went over a phase of wall seconds.
type Report struct {
	Wall  float64 `json:"wall_seconds"`
	Procs []Use   `json:"procs"`
	// Machine is the busy cores of the whole machine; Stack and Loadgen the parts of it taken by the
	// stack's processes and by loadgen; Other the rest (other people's work, the kernel's softirqs
	// that land outside these processes). Steal is the virtual CPU time the hypervisor ran something
	// else instead, in cores: time the machine was meant to have and did not.
	Machine float64 `json:"machine_cores"`
	Softirq float64 `json:"softirq_cores"` // part of Machine
	Steal   float64 `json:"steal_cores"`
	Cores   int     `json:"machine_core_count"`
	Stack   float64 `json:"stack_cores"`
	Loadgen float64 `json:"loadgen_cores"`
	Other   float64 `json:"other_cores"`
}

// Between computes the report between two snapshots wall seconds apart; cores is the machine's.
func Between(procs []Proc, a, b Snapshot, wall float64, cores int) Report {
	r := Report{Wall: wall, Cores: cores}
	if wall <= 0 {
		return r
	}
	for _, p := range procs {
		ta, ok1 := a.procs[p.PID]
		tb, ok2 := b.procs[p.PID]
		if !ok1 || !ok2 || tb < ta {
			continue
		}
		sec := float64(tb-ta) / clockTicks
		u := Use{Name: p.Name, Seconds: sec, Cores: sec / wall, Loadgen: p.Mine}
		if sb, sa := b.switches[p.PID], a.switches[p.PID]; sb >= sa {
			u.Switches = float64(sb-sa) / wall
		}
		r.Procs = append(r.Procs, u)
		if p.Mine {
			r.Loadgen += u.Cores
		} else {
			r.Stack += u.Cores
		}
	}
	if b.total > a.total && b.busy >= a.busy && b.steal >= a.steal {
		r.Machine = float64(b.busy-a.busy) / float64(b.total-a.total) * float64(cores)
		r.Steal = float64(b.steal-a.steal) / float64(b.total-a.total) * float64(cores)
		r.Softirq = float64(b.softirq-a.softirq) / float64(b.total-a.total) * float64(cores)
	}
	r.Other = max(0, r.Machine-r.Stack-r.Loadgen)
	return r
}

// WriteText writes the report as the load generator's text report shows it.
func (c Report) WriteText(w io.Writer) {
	if c.Wall <= 0 {
		return
	}
	fmt.Fprintf(w, "  cpu      over %.1f s: machine %.2f of %d cores busy (softirq %.2f of it; %.2f more stolen by the hypervisor): stack %.3f, loadgen %.3f, other %.3f\n",
		c.Wall, c.Machine, c.Cores, c.Softirq, c.Steal, c.Stack, c.Loadgen, c.Other)
	procs := append([]Use(nil), c.Procs...)
	sort.Slice(procs, func(i, j int) bool { return procs[i].Cores > procs[j].Cores })
	// Three decimals: an idle stack's processes each use a few thousandths of a core, which two
	// decimals would round to 0.00 or 0.01 (the kernel counts in hundredths of a second).
	var parts []string
	for _, p := range procs {
		if p.Cores >= 0.0005 {
			parts = append(parts, fmt.Sprintf("%s %.3f", p.Name, p.Cores))
		}
	}
	fmt.Fprintf(w, "           by process (cores): %s\n", strings.Join(parts, ", "))
	parts = parts[:0]
	for _, p := range procs {
		if p.Cores >= 0.0005 {
			parts = append(parts, fmt.Sprintf("%s %.0f", p.Name, p.Switches))
		}
	}
	fmt.Fprintf(w, "           context switches per second: %s\n", strings.Join(parts, ", "))
}
