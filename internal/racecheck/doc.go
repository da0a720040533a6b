// Package racecheck has no code: its test runs the unit tests of the
// packages with concurrency under the race detector, so that the suite's
// one command (go test -count=1 -timeout 20m ./...) covers -race too.
package racecheck
