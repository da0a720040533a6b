package queue

// Picking a candidate from a view: which message a Reserve tries next.

type action int

const (
	actReserve action = iota
	actReap           // the reservation's deadline passed: delete it first
	actBury           // delivered the maximum times: move to dead letters
)

type candidate struct {
	seq uint64
	e   entry
	res resState
	act action
	// What the transaction also compares: the gate key's mod revision as
	// the view saw it (0: no gate), and for a WithLast message the view's
	// revision, at which no other message was left (last.go).
	gateMod int64
	lastRev int64
}

// pick finds the first message in sequence order that is ready, or whose
// reservation expired; else it returns when (unix ns) the next one will
// be, 0 for never. The candidate is marked attempted in its current state.
func (v *view) pick(now int64, maxDeliveries uint32) (c candidate, found bool, wake int64) {
	v.compact()
	soon := func(t int64) {
		if wake == 0 || t < wake {
			wake = t
		}
	}
	var gateMod int64
	order := v.order[v.head:]
	reapOnly := false // a closed gate: nothing is handed out
	if g := v.gate; g != nil {
		gateMod = g.mod
		switch {
		case g.rec.Open:
		case g.rec.After != 0:
			order = []uint64{g.rec.After} // the first task alone, while it is not acked
		default:
			// Nothing is handed out (the gate's opener wakes us,
			// gate_open.go), but an expired reservation is still reaped:
			// its message is ready, and a --count gate counts it only once
			// its reservation key is gone. Only reserved messages can be.
			reapOnly, order = true, make([]uint64, 0, len(v.res))
			for seq := range v.res {
				order = append(order, seq)
			}
		}
	}
	others := -1 // whether a message other than WithLast ones is left; counted once, if asked
	for _, seq := range order {
		e := v.msgs[seq]
		if e == nil {
			continue
		}
		r, reserved := v.res[seq]
		if e.m.Last && !reapOnly {
			if others < 0 {
				others = v.othersLeft()
			}
			if others > 0 {
				continue // its turn comes when the others are acked: a change wakes us
			}
		}
		st := state{msgMod: e.mod, resMod: r.mod, gateMod: gateMod}
		if e.m.Last {
			st.lastRev = v.rev
		}
		if a, ok := v.attempted[seq]; ok {
			if a == st {
				continue
			}
			delete(v.attempted, seq)
		}
		c = candidate{seq: seq, e: *e, res: r, gateMod: gateMod, lastRev: st.lastRev}
		switch {
		case reserved && r.r.Deadline > now:
			soon(r.r.Deadline)
			continue
		case reserved:
			c.act = actReap
		case e.m.NotBefore > now:
			soon(e.m.NotBefore)
			continue
		case e.m.Deliveries >= maxDeliveries:
			c.act = actBury
		}
		v.attempted[seq] = st
		return c, true, 0
	}
	return candidate{}, false, wake
}

// forget lets a candidate be tried again in the state it was tried in.
func (v *view) forget(c candidate) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.attempted, c.seq)
}
