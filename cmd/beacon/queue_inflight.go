package main

import (
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/beaconhq/beacon/api/beaconpb"
	"github.com/beaconhq/beacon/internal/cliout"
)

// printInFlight is the table of `beacon queue stats QUEUE --in-flight`:
// each in-flight message's worker, its last progress report and its age.
func printInFlight(p *cliout.Printer, s *beaconpb.QueueStats) error {
	fmt.Fprintln(p.W)
	var rows [][]string
	for _, f := range s.InFlightMessages {
		pid, pct, age := "-", "-", "-"
		if f.Pid != 0 {
			pid = strconv.FormatUint(uint64(f.Pid), 10)
		}
		if f.Percent != nil {
			pct = strconv.FormatUint(uint64(*f.Percent), 10) + "%"
		}
		if f.ReservedAt != nil {
			age = f.Age.AsDuration().Round(time.Millisecond).String()
		}
		msg := "-"
		if f.ProgressMessage != "" {
			msg = strconv.Quote(f.ProgressMessage)
		}
		if len(msg) > 60 {
			cut := 57
			for cut > 0 && !utf8.RuneStart(msg[cut]) {
				cut-- // not inside a rune: the table stays UTF-8
			}
			msg = msg[:cut] + "..."
		}
		rows = append(rows, []string{f.Id, f.Node, pid, pct, msg, age, strconv.FormatUint(uint64(f.Deliveries), 10)})
	}
	if err := p.Table([]string{"ID", "NODE", "PID", "PROGRESS", "MESSAGE", "AGE", "DELIVERIES"}, rows); err != nil {
		return err
	}
	if s.InFlightMore {
		fmt.Fprintf(p.W, "(more than %d in flight; the oldest ids are listed)\n", len(s.InFlightMessages))
	}
	return nil
}
