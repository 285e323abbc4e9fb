package proccpu

import (
	"slices"
	"testing"
)

func TestProcTicks(t *testing.T) {
	stat := []byte("4809 (push-server) S 4503 4503 4503 0 -1 4194304 1200 0 0 0 731 212 0 0 20 0 12 0 1000 2389000000 7000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
	got, err := procTicks(stat)
	if err != nil || got != 943 {
		t.Fatalf("procTicks = %d, %v; want 943", got, err)
	}
	odd := []byte("77 (a (b) c) R 1 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1\n")
	if got, err := procTicks(odd); err != nil || got != 11 {
		t.Fatalf("name with parentheses: %d, %v", got, err)
	}
	if _, err := procTicks([]byte("1 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
}

func TestMachineTicks(t *testing.T) {
	stat := []byte("cpu  100 5 50 800 20 3 2 9 7 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n")
	busy, softirq, steal, total, err := machineTicks(stat)
	if err != nil || busy != 160 || softirq != 2 || steal != 9 || total != 989 {
		t.Fatalf("machineTicks = %d, %d, %d, %d, %v; want 160, 2, 9, 989", busy, softirq, steal, total, err)
	}
	if _, _, _, _, err := machineTicks([]byte("intr 1 2 3\n")); err == nil {
		t.Fatal("no cpu line accepted")
	}
}

func TestCPUBetween(t *testing.T) {
	procs := []Proc{{Name: "ps-1", PID: 1}, {Name: "loadgen", PID: 2, Mine: true}, {Name: "gone", PID: 3}}
	a := Snapshot{procs: map[int]uint64{1: 100, 2: 50, 3: 10}, busy: 1000, steal: 10, total: 2000}
	b := Snapshot{procs: map[int]uint64{1: 200, 2: 100}, busy: 1350, steal: 30, total: 2400}
	r := Between(procs, a, b, 2, 2)
	if len(r.Procs) != 2 || r.Stack != 0.5 || r.Loadgen != 0.25 {
		t.Fatalf("report %+v", r)
	}
	if r.Machine != 1.75 || r.Other != 1 || r.Steal != 0.1 {
		t.Fatalf("machine %.2f other %.2f steal %.2f, want 1.75, 1 and 0.1", r.Machine, r.Other, r.Steal)
	}
}

func TestStackProcs(t *testing.T) {
	got := StackProcs(map[string]int{"ps-2": 30, "push-route": 20, "ps-1": 10, "stopped": 0})
	want := []Proc{{Name: "ps-1", PID: 10}, {Name: "ps-2", PID: 30}, {Name: "push-route", PID: 20}}
	if !slices.Equal(got, want) {
		t.Fatalf("StackProcs = %+v, want %+v", got, want)
	}
}

func TestCtxSwitches(t *testing.T) {
	status := []byte("Name:\tpush-route\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1200\nnonvoluntary_ctxt_switches:\t34\n")
	if got := ctxSwitches(status); got != 1234 {
		t.Fatalf("ctxSwitches = %d, want 1234", got)
	}
}
