package check

import (
	"fmt"
	"sort"
)

// CheckQueue judges a queue history against at-least-once delivery:
//
//   - KindLost: a message known to exist (pushed ok, or delivered) that
//     was neither acked (ok or indeterminate) nor in the final contents;
//   - KindUnexpected: a delivered or final message that no push accounts
//     for (never pushed, push failed, or a second copy of a pushed
//     payload);
//   - KindCorrupt: a delivery's payload differs from the push's;
//   - KindDuplicate: a delivery of a message whose previous delivery had
//     not ended by then: no crash of its worker since its start, no
//     expiry, no passed deadline, no nack; or a message listed twice in
//     the final contents;
//   - KindAckAfterExpiry: an ack answered ok although it was sent after
//     its reservation had ended (an Expiry, or the message's next
//     delivery, which needs the old reservation gone);
//   - KindAckedPresent: a message acked ok but still in the final
//     contents.
func CheckQueue(h QueueHistory) ([]Anomaly, error) {
	if err := h.validate(); err != nil {
		return nil, err
	}
	c := &queueChecker{h: h, idx: newQueueIndex(h.Pushes), deliveries: make(map[string][]Delivery)}
	c.expected()
	c.duplicates()
	c.accounting()
	return c.anomalies, nil
}

type queueChecker struct {
	h          QueueHistory
	idx        *queueIndex
	deliveries map[string][]Delivery // by message id, in start order
	ids        []string              // message ids delivered, sorted
	final      map[string]string     // message id -> where it was at the end
	anomalies  []Anomaly
}

func (c *queueChecker) add(k Kind, format string, args ...any) {
	c.anomalies = append(c.anomalies, Anomaly{k, fmt.Sprintf(format, args...)})
}

// expected resolves every delivered and final message against the pushes.
func (c *queueChecker) expected() {
	ds := append([]Delivery(nil), c.h.Deliveries...)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Start < ds[j].Start })
	unexpected := make(map[string]bool)
	for _, d := range ds {
		if _, seen := c.deliveries[d.Message]; !seen {
			c.ids = append(c.ids, d.Message)
			if ok, why := c.idx.resolve(d.Message, d.Payload); !ok {
				unexpected[d.Message] = true
				c.add(KindUnexpected, "%s was delivered, but %s", d, why)
			}
		}
		c.deliveries[d.Message] = append(c.deliveries[d.Message], d)
		if unexpected[d.Message] || d.Payload == "" {
			continue
		}
		if pushes := c.idx.byID[d.Message]; len(pushes) > 0 && !c.pushedPayload(pushes, d.Payload) {
			c.add(KindCorrupt, "%s arrived with payload %q, pushed as %q", d, d.Payload, c.h.Pushes[pushes[0]].Payload)
		}
	}
	sort.Strings(c.ids)

	c.final = make(map[string]string)
	for _, part := range []struct {
		where string
		msgs  []Message
	}{{"ready", c.h.Final.Ready}, {"in flight", c.h.Final.InFlight}, {"dead", c.h.Final.Dead}} {
		for _, m := range part.msgs {
			if where, dup := c.final[m.ID]; dup {
				c.add(KindDuplicate, "message %s is in the final contents twice: %s and %s", m.ID, where, part.where)
				continue
			}
			c.final[m.ID] = part.where
			if _, delivered := c.deliveries[m.ID]; delivered {
				continue // resolved above
			}
			if ok, why := c.idx.resolve(m.ID, m.Payload); !ok {
				c.add(KindUnexpected, "message %s (payload %q) is %s at the end, but %s", m.ID, m.Payload, part.where, why)
			}
		}
	}
}

func (c *queueChecker) pushedPayload(pushes []int, payload string) bool {
	for _, i := range pushes {
		if c.h.Pushes[i].Payload == payload {
			return true
		}
	}
	return false
}

// duplicates checks that each delivery after a message's first one was
// made possible by the end of the one before, and that no ack got through
// after its reservation had ended.
func (c *queueChecker) duplicates() {
	expired := make(map[string]int64)
	for _, e := range c.h.Expiries {
		if t, ok := expired[e.Reservation]; !ok || e.At < t {
			expired[e.Reservation] = e.At
		}
	}
	for _, id := range c.ids {
		ds := c.deliveries[id]
		for k, d := range ds {
			ended, how := int64(0), ""
			if t, ok := expired[d.Reservation]; ok {
				ended, how = t, "expired"
			}
			if k+1 < len(ds) && (how == "" || ds[k+1].Start < ended) {
				ended, how = ds[k+1].Start, "taken over by the next delivery"
			}
			if d.Ack == Acked && d.AckResult == OK && how != "" && d.End > ended {
				c.add(KindAckAfterExpiry, "%s: ack answered ok, but the reservation had %s at %s", d, how, stamp(ended))
			}
			if k == 0 {
				continue
			}
			if prev := ds[k-1]; !c.released(prev, d.Start, expired) {
				note := ""
				if prev.Ack == Acked && prev.AckResult == OK {
					note = ", and it had been acked ok"
				}
				c.add(KindDuplicate, "%s while %s had not ended: no crash, expiry, deadline or nack before%s", d, prev, note)
			}
		}
	}
}

// released reports whether delivery d could have ended by time t.
func (c *queueChecker) released(d Delivery, t int64, expired map[string]int64) bool {
	if at, ok := expired[d.Reservation]; ok && at <= t {
		return true
	}
	if d.Deadline > 0 && d.Deadline <= t {
		return true
	}
	if d.Ack == Nacked && d.AckResult != Failed && d.End <= t {
		return true
	}
	for _, cr := range c.h.Crashes {
		if cr.Worker == d.Worker && cr.At >= d.Start && cr.At <= t {
			return true
		}
	}
	return false
}

// accounting checks that every message known to exist was acked or is
// still in the queue, and that no acked message is.
func (c *queueChecker) accounting() {
	exists := make(map[string]bool)
	for id, pushes := range c.idx.byID {
		for _, i := range pushes {
			if c.h.Pushes[i].Outcome == OK {
				exists[id] = true
			}
		}
	}
	for _, id := range c.ids {
		exists[id] = true
	}
	ids := make([]string, 0, len(exists))
	for id := range exists {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		var ackedOK, acked bool
		for _, d := range c.deliveries[id] {
			if d.Ack == Acked && d.AckResult != Failed {
				acked = true
				ackedOK = ackedOK || d.AckResult == OK
			}
		}
		where, present := c.final[id]
		switch {
		case !acked && !present:
			c.add(KindLost, "message %s %s, never acked, and not in the queue at the end", id, c.story(id))
		case ackedOK && present:
			c.add(KindAckedPresent, "message %s was acked ok but is %s at the end", id, where)
		}
	}
}

// story says how a message was pushed and delivered, for a lost-message
// report.
func (c *queueChecker) story(id string) string {
	ds := c.deliveries[id]
	if len(ds) == 0 {
		return "was pushed ok but never delivered"
	}
	return fmt.Sprintf("was delivered %d times, last as %s", len(ds), ds[len(ds)-1])
}
