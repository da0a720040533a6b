package check

import (
	"bytes"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"testing"
)

func TestSummaryCountsAndPrints(t *testing.T) {
	s := Summary{Workload: "lock-exclusive"}
	for _, o := range []Outcome{OK, OK, OK, Failed, Indeterminate} {
		s.Record(o)
	}
	s.Fault("partition")
	s.Fault("kill")
	s.Fault("kill")
	if s.Attempted != 5 || s.OK != 3 || s.Failed != 1 || s.Indeterminate != 1 || s.Faults["kill"] != 2 {
		t.Fatalf("counts %+v", s)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err() = %v with no anomalies", err)
	}

	s.Add(Anomaly{KindOverlap, "n1 and\n n2 at once"}, Anomaly{KindTokenOrder, "token 7 after 9"})
	var b bytes.Buffer
	if err := s.Print(&b); err != nil {
		t.Fatal(err)
	}
	want := `workload              lock-exclusive
operations attempted  5
  ok                  3
  failed              1
  indeterminate       1
faults injected       3
  kill                2
  partition           1
anomalies             2
  overlap             n1 and n2 at once
  token-order         token 7 after 9
`
	if b.String() != want {
		t.Errorf("Print:\n%s\nwant:\n%s", b.String(), want)
	}
	if s.Count(KindOverlap) != 1 || s.Count(KindLost) != 0 {
		t.Errorf("Count: %d overlaps, %d lost", s.Count(KindOverlap), s.Count(KindLost))
	}

	err := s.Err()
	var ae *AnomaliesError
	if !errors.Is(err, ErrAnomalies) || !errors.As(err, &ae) || len(ae.Anomalies) != 2 {
		t.Fatalf("Err() = %#v, want an *AnomaliesError wrapping ErrAnomalies", err)
	}
	if msg := err.Error(); msg != "workload lock-exclusive: 2 anomalies; overlap: n1 and n2 at once; token-order: token 7 after 9" {
		t.Errorf("Err().Error() = %q", msg)
	}
}

// Every kind of anomaly this package defines has a known-bad history that
// produces it, so that no checker can pass silently by never looking.
func TestEveryKindHasABadHistory(t *testing.T) {
	one := func(a []Anomaly, err error) []Anomaly {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	fenced := func(h FencedHistory) []Anomaly { return one(CheckFenced(h)) }
	bad := map[Kind][]Anomaly{
		KindOverlap:    one(CheckExclusive(concat(hold("n1", 1, 5, ms(0), ms(10)), hold("n2", 2, 6, ms(5), ms(15))), 1)),
		KindOverLimit:  one(CheckExclusive(concat(hold("n1", 1, 5, ms(0), ms(10)), hold("n2", 2, 6, ms(5), ms(15)), hold("n3", 3, 7, ms(6), ms(7))), 2)),
		KindTokenOrder: one(CheckExclusive(concat(hold("n1", 1, 6, ms(0), ms(10)), hold("n2", 2, 5, ms(10), ms(15))), 1)),
		KindMalformed:  one(CheckExclusive(hold("n1", 1, 6, ms(0), ms(10))[1:], 1)),

		KindPhantom:         fenced(FencedHistory{Reads: []Read{rd("r", "x", 0, 1)}}),
		KindFailedApplied:   fenced(FencedHistory{Writes: []Write{wr("n1", 5, "x", 0, 1, Failed)}, Final: str("x")}),
		KindSuperseded:      fenced(FencedHistory{Writes: []Write{wr("n1", 6, "a", 0, 1, OK), wr("n2", 5, "b", 2, 3, OK)}}),
		KindStaleRead:       fenced(FencedHistory{Writes: []Write{wr("n1", 5, "a", 0, 1, OK)}, Reads: []Read{rd("r", "", 2, 3)}}),
		KindLostWrite:       fenced(FencedHistory{Writes: []Write{wr("n1", 5, "a", 0, 1, OK)}, Observed: []string{}}),
		KindRevived:         fenced(FencedHistory{Writes: []Write{wr("n1", 5, "a", 0, 1, Failed), wr("n1", 5, "b", 2, 3, OK)}}),
		KindFinal:           fenced(FencedHistory{Writes: []Write{wr("n1", 5, "a", 0, 1, OK)}, Final: str("")}),
		KindNotLinearizable: fenced(FencedHistory{Writes: []Write{wr("n1", 5, "a", 0, 1, OK)}, Reads: []Read{rd("r", "", 2, 3)}}),

		KindLost:       one(CheckQueue(QueueHistory{Pushes: []Push{push("1", "p", OK)}})),
		KindUnexpected: one(CheckQueue(QueueHistory{Final: QueueContents{Ready: []Message{{ID: "1"}}}})),
		KindDuplicate: one(CheckQueue(QueueHistory{Pushes: []Push{push("1", "p", OK)},
			Deliveries: []Delivery{deliver("w", "1", "p", "r1", 1, NoAck, 0, ""), deliver("w", "1", "p", "r2", 2, Acked, 3, OK)}})),
		KindAckAfterExpiry: one(CheckQueue(QueueHistory{Pushes: []Push{push("1", "p", OK)},
			Deliveries: []Delivery{deliver("w", "1", "p", "r1", 1, Acked, 3, OK)}, Expiries: []Expiry{{"r1", ms(2)}}})),
		KindAckedPresent: one(CheckQueue(QueueHistory{Pushes: []Push{push("1", "p", OK)},
			Deliveries: []Delivery{deliver("w", "1", "p", "r1", 1, Acked, 3, OK)}, Final: QueueContents{Ready: []Message{{ID: "1"}}}})),
		KindCorrupt: one(CheckQueue(QueueHistory{Pushes: []Push{push("1", "p", OK)},
			Deliveries: []Delivery{deliver("w", "1", "q", "r1", 1, Acked, 3, OK)}})),
	}
	for _, k := range definedKinds(t) {
		found := false
		for _, a := range bad[k] {
			found = found || a.Kind == k
		}
		if !found {
			t.Errorf("no known-bad history produces %s (got %v)", k, bad[k])
		}
	}
}

// definedKinds lists the Kind constants declared in the package's sources.
func definedKinds(t *testing.T) []Kind {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "anomaly.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []Kind
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Kind" {
				continue
			}
			for _, v := range vs.Values {
				lit := v.(*ast.BasicLit)
				kinds = append(kinds, Kind(strings.Trim(lit.Value, `"`)))
			}
		}
	}
	if len(kinds) < 18 {
		t.Fatalf("found only %d Kind constants in anomaly.go", len(kinds))
	}
	return kinds
}
