package healthcheck

import (
	"strings"
	"testing"
)

// TestThresholds feeds raw results one by one and checks the reported
// status after each, written as one letter per step: p passing, w warning,
// c critical.
func TestThresholds(t *testing.T) {
	letter := map[string]byte{StatusPassing: 'p', StatusWarning: 'w', StatusCritical: 'c'}
	status := map[byte]string{'p': StatusPassing, 'w': StatusWarning, 'c': StatusCritical}
	for _, c := range []struct {
		name           string
		success, fails int
		initial        byte
		raw, want      string
	}{
		{"no thresholds follow every result", 1, 1, 'c', "pcpwcp", "pcpwcp"},
		{"zero means one", 0, 0, 'c', "pc", "pc"},
		{"three successes to pass", 3, 1, 'c', "ppppc", "ccppc"},
		{"a failure restarts the success streak", 3, 1, 'c', "ppcppp", "cccccp"},
		{"two failures to go critical", 1, 2, 'p', "cccp", "pccp"},
		{"a success restarts the failure streak", 1, 2, 'p', "cpcpcc", "pppppc"},
		{"warning is reported at once", 3, 3, 'p', "wp", "ww"},
		{"warning ends the success streak", 2, 1, 'c', "pwppp", "cwwpp"},
		{"warning ends the failure streak", 1, 2, 'p', "cwcc", "pwwc"},
		{"failures count from warning too", 1, 3, 'w', "cccp", "wwcp"},
		{"an unknown status counts as a failure", 1, 1, 'p', "x", "c"},
	} {
		t.Run(c.name, func(t *testing.T) {
			th := newThresholds(c.success, c.fails)
			reported := status[c.initial]
			var got strings.Builder
			for i := range len(c.raw) {
				raw, ok := status[c.raw[i]]
				if !ok {
					raw = "bogus"
				}
				reported = th.next(reported, raw)
				got.WriteByte(letter[reported])
			}
			if got.String() != c.want {
				t.Fatalf("raw %s from %c: got %s, want %s", c.raw, c.initial, got.String(), c.want)
			}
		})
	}
}

// A long healthy run must not overflow the streak counter.
func TestThresholdsSaturate(t *testing.T) {
	th := newThresholds(3, 3)
	for range 1000 {
		th.next(StatusPassing, StatusPassing)
	}
	if th.successes != 3 {
		t.Fatalf("success streak %d, want it held at 3", th.successes)
	}
}
