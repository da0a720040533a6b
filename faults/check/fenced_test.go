package check

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

func wr(client string, token int64, value string, invoke, ret int64, o Outcome) Write {
	return Write{Client: client, Token: token, Value: value, Invoke: ms(invoke), Return: ms(ret), Outcome: o}
}

func rd(client, value string, invoke, ret int64) Read {
	return Read{Client: client, Value: value, Invoke: ms(invoke), Return: ms(ret), Outcome: OK}
}

func str(s string) *string { return &s }

// checkBoth runs the direct and the porcupine checks; wantLinearizable says
// whether porcupine should accept the history.
func checkBoth(t *testing.T, h FencedHistory, wantLinearizable bool, kinds ...Kind) []Anomaly {
	t.Helper()
	direct := must[[]Anomaly](t)(CheckFencedDirect(h))
	wantKinds(t, direct, kinds...)
	lin := must[[]Anomaly](t)(CheckFencedLinearizable(h))
	if wantLinearizable {
		wantKinds(t, lin)
	} else {
		wantKinds(t, lin, KindNotLinearizable)
	}
	all := must[[]Anomaly](t)(CheckFenced(h))
	if len(all) != len(direct)+len(lin) {
		t.Errorf("CheckFenced found %d anomalies, want %d+%d", len(all), len(direct), len(lin))
	}
	return direct
}

// A good run: three holders in turn, a stale holder refused, reads, an
// indeterminate write that may or may not have landed, and the final
// value from the last holder.
func goodFenced() FencedHistory {
	return FencedHistory{
		Initial: "",
		Writes: []Write{
			wr("n1", 10, "a1", 0, 2, OK),
			wr("n1", 10, "a2", 3, 5, OK),
			wr("n2", 12, "b1", 6, 8, OK),
			wr("n1", 10, "a3", 7, 9, Failed), // n1's grant had ended
			wr("n2", 12, "b2", 10, 30, Indeterminate),
			wr("n3", 15, "c1", 20, 22, OK),
			wr("n3", 15, "c2", 23, 25, OK),
		},
		Reads:    []Read{rd("r", "a2", 5, 6), rd("r", "b1", 9, 10), rd("r", "c1", 22, 23), {Client: "r", Invoke: ms(24), Outcome: Indeterminate}},
		Final:    str("c2"),
		Observed: []string{"a1", "a2", "b1", "b2", "c1", "c2"},
	}
}

func TestFencedGoodHistory(t *testing.T) {
	checkBoth(t, goodFenced(), true)
	h := goodFenced()
	h.Observed = []string{"a1", "a2", "b1", "c1", "c2"} // b2 did not land
	checkBoth(t, h, true)
	h.Observed = nil
	h.Writes[4].Outcome = Failed // nor would it have, as failed
	checkBoth(t, h, true)
}

// Two holders whose writes overlap in time: either order is possible, and
// the observed history decides.
func TestFencedConcurrentWrites(t *testing.T) {
	h := FencedHistory{
		Writes: []Write{wr("n1", 10, "a", 0, 10, OK), wr("n2", 12, "b", 5, 15, OK)},
		Final:  str("b"),
	}
	checkBoth(t, h, true)
	h.Observed = []string{"a", "b"}
	checkBoth(t, h, true)

	// b applied first, then a: real time cannot tell, the history can.
	h.Observed = []string{"b", "a"}
	h.Final = str("a")
	a := checkBoth(t, h, false, KindSuperseded, KindFinal)
	wantText(t, a, KindSuperseded, "token 10 applied after token 12 (in the observed history)")
}

func TestFencedSupersededWrite(t *testing.T) {
	h := FencedHistory{Writes: []Write{wr("n2", 12, "b", 0, 5, OK), wr("n1", 10, "a", 6, 8, OK)}}
	a := checkBoth(t, h, false, KindSuperseded)
	wantText(t, a, KindSuperseded, "token 10 applied after token 12", `"b"`, `"a"`)

	// The same, known from the revisions although the calls overlap.
	h = FencedHistory{Writes: []Write{wr("n2", 12, "b", 0, 10, OK), wr("n1", 10, "a", 1, 9, OK)}}
	h.Writes[0].Revision, h.Writes[1].Revision = 100, 101
	a = checkBoth(t, h, true, KindSuperseded)
	wantText(t, a, KindSuperseded, "by revision", "at rev 101")
}

// An indeterminate write of a superseded holder, seen by a read after the
// newer holder had written.
func TestFencedSupersededIndeterminateWrite(t *testing.T) {
	h := FencedHistory{
		Writes: []Write{wr("n2", 12, "b", 0, 5, OK), wr("n1", 10, "a", 6, 0, Indeterminate)},
		Reads:  []Read{rd("r", "a", 10, 11)},
	}
	checkBoth(t, h, false, KindSuperseded, KindStaleRead)
	// Never seen, it is fine.
	h.Reads = []Read{rd("r", "b", 10, 11)}
	checkBoth(t, h, true)
}

func TestFencedFailedWriteApplied(t *testing.T) {
	h := FencedHistory{
		Writes: []Write{wr("n1", 10, "a", 0, 5, OK), wr("n1", 10, "x", 6, 8, Failed)},
		Reads:  []Read{rd("r", "x", 9, 10)},
		Final:  str("x"),
	}
	a := checkBoth(t, h, false, KindFailedApplied, KindFailedApplied)
	wantText(t, a, KindFailedApplied, `"x", but its write was refused`)
}

func TestFencedPhantomValue(t *testing.T) {
	h := FencedHistory{Writes: []Write{wr("n1", 10, "a", 0, 5, OK)}, Reads: []Read{rd("r", "zz", 6, 7)}, Observed: []string{"a", "zz"}}
	checkBoth(t, h, false, KindPhantom, KindPhantom)
	// A value that comes back after being overwritten.
	h = FencedHistory{Writes: []Write{wr("n1", 10, "a", 0, 5, OK), wr("n1", 10, "b", 6, 7, OK)}, Observed: []string{"a", "b", "b", "a"}}
	checkBoth(t, h, true, KindPhantom)
	// The initial value back in the middle (a delete nobody made); at the
	// start it is only the register's first state.
	h.Observed = []string{"", "a", "", "b"}
	checkBoth(t, h, true, KindPhantom)
	h.Observed = []string{"", "a", "b"}
	checkBoth(t, h, true)
}

func TestFencedStaleRead(t *testing.T) {
	h := FencedHistory{
		Writes: []Write{wr("n1", 10, "a", 0, 2, OK), wr("n2", 12, "b", 3, 5, OK)},
		Reads:  []Read{rd("r", "a", 6, 7)},
	}
	a := checkBoth(t, h, false, KindStaleRead)
	wantText(t, a, KindStaleRead, `read "a"`, `wrote "b"`)
	// Reading the initial value after a write landed is stale too.
	h.Reads = []Read{rd("r", "", 6, 7)}
	checkBoth(t, h, false, KindStaleRead)
}

func TestFencedRevivedToken(t *testing.T) {
	h := FencedHistory{Writes: []Write{wr("n1", 10, "a", 0, 2, Failed), wr("n1", 10, "b", 3, 5, OK)}}
	a := checkBoth(t, h, true, KindRevived)
	wantText(t, a, KindRevived, "token 10 was refused, then accepted")
}

func TestFencedLostWrite(t *testing.T) {
	h := FencedHistory{Writes: []Write{wr("n1", 10, "a", 0, 2, OK), wr("n1", 10, "b", 3, 5, OK)}, Observed: []string{"b"}, Final: str("b")}
	a := checkBoth(t, h, true, KindLostWrite)
	wantText(t, a, KindLostWrite, `wrote "a"`)
}

func TestFencedFinalNotLatest(t *testing.T) {
	h := FencedHistory{Writes: []Write{wr("n1", 10, "a", 0, 10, OK), wr("n2", 12, "b", 1, 9, OK)}, Final: str("a")}
	// b cannot have landed before a (its token is higher), nor a after b.
	a := checkBoth(t, h, false, KindFinal)
	wantText(t, a, KindFinal, `final value "a" has token 10`)

	h.Final = str("")
	checkBoth(t, h, false, KindFinal)

	h.Final, h.Observed = str("b"), []string{"a", "b", "a"}
	checkBoth(t, h, true, KindPhantom, KindFinal)
}

func TestFencedBadHistory(t *testing.T) {
	for name, h := range map[string]FencedHistory{
		"duplicate value": {Writes: []Write{wr("n1", 10, "a", 0, 1, OK), wr("n1", 10, "a", 2, 3, OK)}},
		"initial value":   {Initial: "a", Writes: []Write{wr("n1", 10, "a", 0, 1, OK)}},
		"no outcome":      {Writes: []Write{wr("n1", 10, "a", 0, 1, "")}},
		"no token":        {Writes: []Write{wr("n1", 0, "a", 0, 1, OK)}},
		"backwards":       {Writes: []Write{wr("n1", 10, "a", 5, 1, OK)}},
		"read backwards":  {Reads: []Read{rd("r", "", 5, 1)}},
	} {
		if _, err := CheckFenced(h); !errors.Is(err, ErrBadHistory) {
			t.Errorf("%s: got %v, want ErrBadHistory", name, err)
		}
	}
}

func TestFencedVisualization(t *testing.T) {
	dir := t.TempDir()
	h := FencedHistory{Writes: []Write{wr("n2", 12, "b", 0, 5, OK), wr("n1", 10, "a", 6, 8, OK)}}
	a := must[[]Anomaly](t)(CheckFencedLinearizable(h, WithVisualization(dir)))
	wantKinds(t, a, KindNotLinearizable)
	_, path, ok := strings.Cut(a[0].Text, "visualisation: ")
	if !ok || !strings.HasPrefix(path, dir) {
		t.Fatalf("anomaly %q names no visualisation file in %s", a[0].Text, dir)
	}
	html, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(html), "<html") || !strings.Contains(string(html), "token 12") {
		t.Fatalf("visualisation %s: %v, %d bytes", path, err, len(html))
	}
}

func TestFencedModelSteps(t *testing.T) {
	st := fencedState{token: 10, value: "a"}
	for _, c := range []struct {
		in    fencedInput
		out   fencedOutput
		legal bool
		next  fencedState
	}{
		{fencedInput{true, 10, "b"}, fencedOutput{outcome: OK}, true, fencedState{10, "b"}},
		{fencedInput{true, 11, "b"}, fencedOutput{outcome: OK}, true, fencedState{11, "b"}},
		{fencedInput{true, 9, "b"}, fencedOutput{outcome: OK}, false, st},
		{fencedInput{true, 9, "b"}, fencedOutput{outcome: Failed}, true, st},
		{fencedInput{true, 11, "b"}, fencedOutput{outcome: Failed}, true, st},
		{fencedInput{true, 9, "b"}, fencedOutput{outcome: Indeterminate}, true, st},
		{fencedInput{true, 11, "b"}, fencedOutput{outcome: Indeterminate}, true, fencedState{11, "b"}},
		{fencedInput{}, fencedOutput{outcome: OK, value: "a"}, true, st},
		{fencedInput{}, fencedOutput{outcome: OK, value: "b"}, false, st},
	} {
		legal, next := FencedModel.Step(st, c.in, c.out)
		if legal != c.legal || (legal && next != c.next) {
			t.Errorf("%s from %s: legal %v next %v, want %v %v", FencedModel.DescribeOperation(c.in, c.out),
				FencedModel.DescribeState(st), legal, next, c.legal, c.next)
		}
	}
}

// Many holders, each writing a few times, with indeterminate writes
// sprinkled in: porcupine must finish quickly on workload-sized histories.
func TestFencedLargeHistory(t *testing.T) {
	var h FencedHistory
	at := int64(0)
	for holder := range 40 {
		token := int64(100 + 3*holder)
		for n := range 5 {
			o := OK
			if n == 4 && holder%3 == 0 {
				o = Indeterminate
			}
			h.Writes = append(h.Writes, wr(fmt.Sprintf("n%d", holder%5), token, fmt.Sprintf("v%d-%d", holder, n), at, at+3, o))
			h.Reads = append(h.Reads, rd("r", h.Writes[len(h.Writes)-1].Value, at+1, at+2))
			at += 2 // overlapping calls
		}
		at += 10
	}
	h.Final = str(h.Writes[len(h.Writes)-1].Value)
	checkBoth(t, h, true)
}
