package healthcheck

// thresholds turns the raw results of successive probes into the status to
// report, so that one lost packet does not take an instance out of DNS and
// one lucky answer does not put a broken one back.
//
// The rules:
//
//   - A success (raw passing) adds to the success streak and ends the
//     failure streak. The status turns passing once the streak reaches
//     SuccessBeforePassing; if it is passing already it stays so.
//   - A failure (raw critical) adds to the failure streak and ends the
//     success streak. The status turns critical once the streak reaches
//     FailuresBeforeCritical, counted from passing or from warning alike;
//     if it is critical already it stays so.
//   - A warning (HTTP 429, or a warn heartbeat) is reported at once and
//     ends both streaks. It is neither a success nor a failure: the service
//     answered but asked for less traffic, which is not evidence that it is
//     healthy, nor that it is down. Ending the streaks keeps "consecutive"
//     literal: successes either side of a warning do not add up.
//
// While a streak is still short of its threshold the reported status, and
// its output, stay as they were: the output always explains the status it
// sits beside, and a held probe causes no write to the registry.
//
// thresholds is used only by the monitor's goroutine, so it has no lock.
type thresholds struct {
	successNeeded  int // SuccessBeforePassing, at least 1
	failuresNeeded int // FailuresBeforeCritical, at least 1

	successes int // current success streak
	failures  int // current failure streak
}

func newThresholds(successNeeded, failuresNeeded int) *thresholds {
	return &thresholds{successNeeded: max(successNeeded, 1), failuresNeeded: max(failuresNeeded, 1)}
}

// next records one raw result and returns the status to report, given the
// status reported now. The answer is either reported (the result is held)
// or raw (the result is taken).
func (t *thresholds) next(reported, raw string) string {
	switch raw {
	case StatusPassing:
		t.failures = 0
		t.successes = min(t.successes+1, t.successNeeded) // saturate: no overflow on a long healthy run
		if reported == StatusPassing || t.successes >= t.successNeeded {
			return StatusPassing
		}
		return reported
	case StatusWarning:
		t.successes, t.failures = 0, 0
		return StatusWarning
	default:
		t.successes = 0
		t.failures = min(t.failures+1, t.failuresNeeded)
		if reported == StatusCritical || t.failures >= t.failuresNeeded {
			return StatusCritical
		}
		return reported
	}
}
