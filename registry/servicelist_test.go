package registry

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestServiceListMerge puts and removes instances at random, reading the
// list between bursts of changes of every size: the merged list is always
// what sorting byID from scratch gives, and a list handed out before is
// never modified.
func TestServiceListMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	e := newServiceEntry()
	if list, ok := e.current(); !ok || list != nil {
		t.Fatalf("empty entry: %v %v", list, ok)
	}
	var handedOut [][]*Instance
	var copies [][]*Instance
	for round := range 300 {
		burst := rng.IntN(8)
		if round%50 == 0 {
			burst = 400 // most of the service: the list is sorted afresh
		}
		for range burst {
			id := fmt.Sprintf("i%03d", rng.IntN(500))
			if rng.IntN(3) == 0 {
				e.remove(id)
			} else {
				e.put(&Instance{ID: id, Service: "s", Port: round})
			}
		}
		got := e.sorted()
		want := make([]*Instance, 0, len(e.byID))
		for _, in := range e.byID {
			want = append(want, in)
		}
		slices.SortFunc(want, func(a, b *Instance) int { return strings.Compare(a.ID, b.ID) })
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: merged list of %d differs from sorted byID of %d", round, len(got), len(want))
		}
		if cur, ok := e.current(); !ok || !slices.Equal(cur, got) {
			t.Fatalf("round %d: not current after sorted", round)
		}
		handedOut = append(handedOut, got)
		copies = append(copies, slices.Clone(got))
	}
	for i := range handedOut {
		if !slices.Equal(handedOut[i], copies[i]) {
			t.Fatalf("list %d was modified after it was handed out", i)
		}
	}
}
