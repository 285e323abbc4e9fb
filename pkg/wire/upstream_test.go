package wire

import "testing"

func TestUpstreamID(t *testing.T) {
	a := UpstreamID("alice", "phone", "r1")
	if a != UpstreamID("alice", "phone", "r1") {
		t.Fatal("same sender and ref gave different ids")
	}
	if len(a) != 32 {
		t.Fatalf("id %q has %d characters, want 32", a, len(a))
	}
	for _, other := range [][3]string{{"alice", "phone", "r2"}, {"alice", "tablet", "r1"}, {"bob", "phone", "r1"}, {"alicep", "hone", "r1"}} {
		if UpstreamID(other[0], other[1], other[2]) == a {
			t.Fatalf("%v collides with alice/phone/r1", other)
		}
	}
}
