package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

const numUIDs = 100_000

// testUIDs is shared by every test because formatting 100,000 strings per
// test would dominate the run time under -race.
var testUIDs = sync.OnceValue(func() []string {
	uids := make([]string, numUIDs)
	for i := range uids {
		uids[i] = fmt.Sprintf("uid-%d", i)
	}
	return uids
})

func members(n int) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("push-%02d", i+1), Weight: 1}
	}
	return ms
}

// assign returns the owner of every test uid, index-aligned with testUIDs.
func assign(tb testing.TB, r *Ring) []string {
	tb.Helper()
	uids := testUIDs()
	owners := make([]string, len(uids))
	for i, uid := range uids {
		id, ok := r.Get(uid)
		if !ok {
			tb.Fatalf("Get(%q) on a ring of %d members: ok = false", uid, r.Len())
		}
		owners[i] = id
	}
	return owners
}

func count(owners []string) map[string]int {
	c := make(map[string]int)
	for _, id := range owners {
		c[id]++
	}
	return c
}

func TestEmpty(t *testing.T) {
	tests := []struct {
		name string
		ring *Ring
	}{
		{"nil ring", nil},
		{"zero value", &Ring{}},
		{"no members", New(nil)},
		{"only empty IDs", New([]Member{{ID: ""}, {ID: "", Weight: 3}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if id, ok := tt.ring.Get("uid-1"); ok || id != "" {
				t.Errorf("Get = %q, %v; want \"\", false", id, ok)
			}
			if n := tt.ring.Len(); n != 0 {
				t.Errorf("Len = %d, want 0", n)
			}
		})
	}
}

func TestSingleMember(t *testing.T) {
	r := New([]Member{{ID: "only"}})
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
	for id, n := range count(assign(t, r)) {
		if id != "only" || n != numUIDs {
			t.Fatalf("%q owns %d uids; want \"only\" to own all %d", id, n, numUIDs)
		}
	}
}

func TestBalance(t *testing.T) {
	r := New(members(10))
	if r.Len() != 10 {
		t.Fatalf("Len = %d, want 10", r.Len())
	}
	c := count(assign(t, r))
	if len(c) != 10 {
		t.Fatalf("%d members own uids, want 10", len(c))
	}
	mean := float64(numUIDs) / 10
	worst := 0.0
	for id, n := range c {
		dev := float64(n)/mean - 1
		worst = max(worst, dev, -dev)
		if dev > 0.10 || dev < -0.10 {
			t.Errorf("%s owns %d uids, %+.1f%% from the mean %.0f; want within ±10%%", id, n, dev*100, mean)
		}
	}
	t.Logf("10 members, %d uids: largest deviation from the mean %.1f%%", numUIDs, worst*100)
}

func TestAddMember(t *testing.T) {
	before := assign(t, New(members(10)))
	after := assign(t, New(members(11)))
	newID := members(11)[10].ID

	moved := 0
	for i := range before {
		if before[i] == after[i] {
			continue
		}
		moved++
		if after[i] != newID {
			t.Fatalf("uid %s moved from %s to %s; only moves to the new member %s are allowed",
				testUIDs()[i], before[i], after[i], newID)
		}
	}
	frac := float64(moved) / numUIDs
	t.Logf("adding an 11th member moved %.2f%% of uids (ideal %.2f%%)", frac*100, 100.0/11)
	if frac < 0.06 || frac > 0.12 {
		t.Errorf("adding an 11th member moved %.2f%% of uids, want 6%%–12%%", frac*100)
	}
}

func TestRemoveMember(t *testing.T) {
	all := members(10)
	before := assign(t, New(all))
	for _, gone := range []int{0, 4, 9} {
		goneID := all[gone].ID
		t.Run(goneID, func(t *testing.T) {
			after := assign(t, New(slices.Delete(slices.Clone(all), gone, gone+1)))
			for i := range before {
				switch {
				case before[i] == goneID && after[i] == goneID:
					t.Fatalf("uid %s still maps to removed member %s", testUIDs()[i], goneID)
				case before[i] != goneID && after[i] != before[i]:
					t.Fatalf("uid %s moved from %s to %s although only %s was removed",
						testUIDs()[i], before[i], after[i], goneID)
				}
			}
		})
	}
}

func TestWeights(t *testing.T) {
	tests := []struct {
		name  string
		heavy []int // indexes of the weight-2 members among 10
	}{
		{"one heavy", []int{3}},
		{"three heavy", []int{0, 5, 9}},
		{"half heavy", []int{0, 2, 4, 6, 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms := members(10)
			for _, i := range tt.heavy {
				ms[i].Weight = 2
			}
			c := count(assign(t, New(ms)))
			light := 0
			for i, m := range ms {
				if !slices.Contains(tt.heavy, i) {
					light += c[m.ID]
				}
			}
			lightMean := float64(light) / float64(len(ms)-len(tt.heavy))
			for _, i := range tt.heavy {
				ratio := float64(c[ms[i].ID]) / lightMean
				t.Logf("%s (weight 2) owns %.2f× the mean weight-1 share", ms[i].ID, ratio)
				if ratio < 2*0.85 || ratio > 2*1.15 {
					t.Errorf("%s (weight 2) owns %.2f× the mean weight-1 share, want 2 ± 15%%", ms[i].ID, ratio)
				}
			}
		})
	}
}

// TestSameAnswers covers the promise that every auth replica, given the same
// live nodes in whatever order ZooKeeper lists them, sends a uid to the same node.
func TestSameAnswers(t *testing.T) {
	base := members(10)
	want := assign(t, New(base))

	shuffled := slices.Clone(base)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) {
		shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
	})
	reversed := slices.Clone(base)
	slices.Reverse(reversed)
	unweighted := slices.Clone(base)
	for i := range unweighted {
		unweighted[i].Weight = -i // <= 0 counts as 1
	}
	padded := append(slices.Clone(base), Member{ID: ""}, base[2], Member{ID: base[5].ID, Weight: 0})

	tests := []struct {
		name    string
		members []Member
	}{
		{"shuffled", shuffled},
		{"reversed", reversed},
		{"zero and negative weights", unweighted},
		{"empty IDs and duplicates", padded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.members)
			if r.Len() != 10 {
				t.Errorf("Len = %d, want 10", r.Len())
			}
			got := assign(t, r)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("uid %s: got %s, want %s", testUIDs()[i], got[i], want[i])
				}
			}
		})
	}
}

func TestDuplicateTakesLargestWeight(t *testing.T) {
	a := New([]Member{{ID: "a", Weight: 1}, {ID: "b", Weight: 3}, {ID: "b", Weight: 1}})
	b := New([]Member{{ID: "b", Weight: 1}, {ID: "a"}, {ID: "b", Weight: 3}})
	want := New([]Member{{ID: "a"}, {ID: "b", Weight: 3}})
	if !slices.Equal(assign(t, a), assign(t, want)) || !slices.Equal(assign(t, b), assign(t, want)) {
		t.Fatal("duplicate IDs did not collapse to the largest weight")
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	r := New(members(10))
	uids := testUIDs()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		r.Get(uids[i%len(uids)])
		i++
	})
	if allocs != 0 {
		t.Errorf("Get allocates %.1f times per call, want 0", allocs)
	}
}

func BenchmarkGet(b *testing.B) {
	uids := testUIDs()
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			r := New(members(n))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				r.Get(uids[i%len(uids)])
				i++
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			ms := members(n)
			b.ReportAllocs()
			for b.Loop() {
				New(ms)
			}
		})
	}
}

// TestGetSkipping: leaving a member out for one lookup gives exactly what a ring without it would,
// so a client that names a failed node lands where that node's users go when it is really gone.
func TestGetSkipping(t *testing.T) {
	all := members(5)
	r := New(all)
	for _, skip := range []int{0, 3} {
		without := New(slices.Delete(slices.Clone(all), skip, skip+1))
		for _, uid := range testUIDs()[:2000] {
			got, ok := r.GetSkipping(uid, all[skip].ID)
			want, _ := without.Get(uid)
			if !ok || got != want {
				t.Fatalf("GetSkipping(%s, %s) = %s, want %s", uid, all[skip].ID, got, want)
			}
			if owner, _ := r.Get(uid); owner != all[skip].ID {
				if got != owner {
					t.Fatalf("uid %s not owned by the skipped member moved from %s to %s", uid, owner, got)
				}
			}
		}
	}
	if id, ok := New(all[:1]).GetSkipping("u", all[0].ID); !ok || id != all[0].ID {
		t.Fatalf("a lone member skipped gave %q, %v; want the member itself", id, ok)
	}
	if _, ok := New(nil).GetSkipping("u", "x"); ok {
		t.Fatal("an empty ring answered")
	}
}
