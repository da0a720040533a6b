package check

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// hold returns the enter and exit events of one holder.
func hold(host string, pid int, token int64, enter, exit int64) []Event {
	return []Event{
		{Time: enter, Kind: Enter, Host: host, PID: pid, Token: token, Source: fmt.Sprintf("%s-%d", host, pid)},
		{Time: exit, Kind: Exit, Host: host, PID: pid, Token: token},
	}
}

func enter(host string, pid, ppid int, token int64, at int64) Event {
	return Event{Time: at, Kind: Enter, Host: host, PID: pid, PPID: ppid, Token: token}
}

func concat(parts ...[]Event) []Event {
	var all []Event
	for _, p := range parts {
		all = append(all, p...)
	}
	return all
}

func TestExclusiveCleanHistory(t *testing.T) {
	events := concat(
		hold("n1", 10, 5, ms(0), ms(10)),
		hold("n2", 20, 8, ms(10), ms(20)), // touches: not an overlap
		hold("n3", 30, 9, ms(25), ms(30)),
		[]Event{enter("n1", 11, 1, 12, ms(31)), {Time: ms(40), Kind: Dead, Host: "n1", PID: 1}},
		hold("n2", 21, 14, ms(40), ms(50)),
	)
	wantKinds(t, must[[]Anomaly](t)(CheckExclusive(events, 1)))
}

func TestExclusiveFindsAnOverlap(t *testing.T) {
	events := concat(hold("n1", 10, 5, ms(0), ms(10)), hold("n2", 20, 8, ms(7), ms(20)))
	a := must[[]Anomaly](t)(CheckExclusive(events, 1))
	wantKinds(t, a, KindOverlap)
	wantText(t, a, KindOverlap, "3ms", "n1 pid 10 token 5", "n2 pid 20 token 8", "(n1-10)", "(n2-20)")
}

func TestExclusiveReportsEveryPair(t *testing.T) {
	events := concat(
		hold("n1", 10, 5, ms(0), ms(100)),
		hold("n2", 20, 6, ms(10), ms(20)),
		hold("n3", 30, 7, ms(30), ms(40)),
	)
	a := must[[]Anomaly](t)(CheckExclusive(events, 1))
	wantKinds(t, a, KindOverlap, KindOverlap)
}

// A holder killed without an exit is in until its Dead event; a Dead
// event naming CMD's parent (the beacon process) closes it too.
func TestExclusiveDeadEvents(t *testing.T) {
	killed := []Event{enter("n1", 10, 9, 5, ms(0)), {Time: ms(50), Kind: Dead, Host: "n1", PID: 9}}
	t.Run("next holder after death", func(t *testing.T) {
		wantKinds(t, must[[]Anomaly](t)(CheckExclusive(concat(killed, hold("n2", 20, 8, ms(50), ms(60))), 1)))
	})
	t.Run("next holder before death", func(t *testing.T) {
		a := must[[]Anomaly](t)(CheckExclusive(concat(killed, hold("n2", 20, 8, ms(30), ms(60))), 1))
		wantKinds(t, a, KindOverlap)
		wantText(t, a, KindOverlap, "20ms", "dead]")
	})
	t.Run("dead event of another host", func(t *testing.T) {
		other := []Event{enter("n1", 10, 9, 5, ms(0)), {Time: ms(5), Kind: Dead, Host: "n3"}}
		a := must[[]Anomaly](t)(CheckExclusive(concat(other, hold("n2", 20, 8, ms(30), ms(60))), 1))
		wantKinds(t, a, KindOverlap)
		wantText(t, a, KindOverlap, "open]")
	})
	t.Run("dead event before the enter", func(t *testing.T) {
		early := []Event{{Time: ms(0), Kind: Dead, Host: "n1"}, enter("n1", 10, 9, 5, ms(1))}
		wantKinds(t, must[[]Anomaly](t)(CheckExclusive(concat(early, hold("n2", 20, 8, ms(30), ms(60))), 1)), KindOverlap)
	})
}

// A holder that never exits and is never declared dead is in until the
// history ends: the worst case, so a forgotten Dead event cannot hide an
// overlap.
func TestExclusiveOpenIntervalLastsToTheEnd(t *testing.T) {
	events := concat([]Event{enter("n1", 10, 9, 5, ms(0))}, hold("n2", 20, 8, ms(100), ms(200)))
	ivs, _ := BuildIntervals(events)
	if ivs[0].How != Open || ivs[0].End != ms(200) {
		t.Fatalf("got %v, want an open interval to the end", ivs[0])
	}
	wantKinds(t, must[[]Anomaly](t)(CheckExclusive(events, 1)), KindOverlap)
}

func TestExclusiveMalformed(t *testing.T) {
	events := concat(
		hold("n1", 10, 5, ms(0), ms(10)),
		[]Event{{Time: ms(20), Kind: Exit, Host: "n2", PID: 20, Token: 8}},
		[]Event{enter("n3", 30, 1, 9, ms(30)), enter("n3", 30, 1, 9, ms(35)), {Time: ms(40), Kind: Exit, Host: "n3", PID: 30, Token: 9}},
	)
	a := must[[]Anomaly](t)(CheckExclusive(events, 1))
	wantKinds(t, a, KindMalformed, KindMalformed)
	wantText(t, a, KindMalformed, "exit without enter", "n2 pid 20")
	wantText(t, a, KindMalformed, "second enter")
}

// A holder with a lower token that runs after a higher token's holder ran
// on a grant that had already ended, even if the two never overlap.
func TestExclusiveTokenOrder(t *testing.T) {
	events := concat(hold("n1", 10, 9, ms(0), ms(10)), hold("n2", 20, 7, ms(20), ms(30)), hold("n3", 30, 0, ms(40), ms(50)))
	a := must[[]Anomaly](t)(CheckExclusive(events, 1))
	wantKinds(t, a, KindTokenOrder)
	wantText(t, a, KindTokenOrder, "token 7 ran after token 9")
}

func TestExclusiveSemaphore(t *testing.T) {
	two := concat(hold("n1", 10, 5, ms(0), ms(30)), hold("n2", 20, 6, ms(10), ms(40)), hold("n3", 30, 7, ms(30), ms(50)))
	wantKinds(t, must[[]Anomaly](t)(CheckExclusive(two, 2)))
	// Tokens of a semaphore's slots need not be in order.
	wantKinds(t, must[[]Anomaly](t)(CheckExclusive(concat(hold("n1", 10, 9, ms(0), ms(5)), hold("n2", 20, 7, ms(10), ms(20))), 2)))

	three := concat(two, hold("n4", 40, 8, ms(15), ms(35)), hold("n5", 50, 9, ms(100), ms(110)))
	a := must[[]Anomaly](t)(CheckExclusive(three, 2))
	wantKinds(t, a, KindOverLimit)
	// n1, n2 and n4 from 15ms, then n2, n4, n3 from 30ms: one span to 35ms.
	wantText(t, a, KindOverLimit, "held by 3 at once (limit 2)", "for 20ms", "n1 pid 10", "n2 pid 20", "n3 pid 30", "n4 pid 40")
	if wantCount := 1; len(a) != wantCount {
		t.Fatalf("got %d anomalies, want %d", len(a), wantCount)
	}
}

func TestExclusiveNamesAreIndependent(t *testing.T) {
	a := hold("n1", 10, 5, ms(0), ms(10))
	b := hold("n2", 20, 3, ms(5), ms(15))
	for i := range a {
		a[i].Name = "alpha"
	}
	for i := range b {
		b[i].Name = "beta"
	}
	wantKinds(t, must[[]Anomaly](t)(CheckExclusive(concat(a, b), 1)))
}

func TestExclusiveRefusesABadLimit(t *testing.T) {
	if _, err := CheckExclusive(nil, 0); !errors.Is(err, ErrBadHistory) {
		t.Fatalf("got %v, want ErrBadHistory", err)
	}
}

// The whole path a workload takes: one log per writer, read back, judged.
func TestExclusiveFromFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(file string, events ...Event) {
		for _, e := range events {
			if err := AppendEvent(filepath.Join(dir, file), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("n1-10.jsonl", hold("n1", 10, 5, ms(0), ms(10))...)
	write("n2-20.jsonl", hold("n2", 20, 8, ms(9), ms(20))...)
	write("workload.jsonl", Event{Time: ms(30), Kind: Dead, Host: "n1"})
	paths, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	a := must[[]Anomaly](t)(CheckExclusive(must[[]Event](t)(ReadEvents(paths...)), 1))
	wantKinds(t, a, KindOverlap)
	wantText(t, a, KindOverlap, "1ms", "n1-10.jsonl:1", "n2-20.jsonl:1")
}
