package check

import (
	"errors"
	"testing"
)

func push(id, payload string, o Outcome) Push {
	return Push{Client: "p", ID: id, Payload: payload, Invoke: ms(0), Return: ms(1), Outcome: o}
}

func deliver(worker, id, payload, res string, start int64, ack AckKind, end int64, result Outcome) Delivery {
	d := Delivery{Worker: worker, Message: id, Payload: payload, Reservation: res, Start: ms(start), Ack: ack, AckResult: result}
	if ack != NoAck {
		d.End = ms(end)
	}
	return d
}

// A good run: three messages, one handled by a worker that crashed, one
// nacked, one whose reservation expired, one pushed without an answer,
// one left in the queue and one dead-lettered.
func goodQueue() QueueHistory {
	return QueueHistory{
		Pushes: []Push{
			push("1", "p1", OK), push("2", "p2", OK), push("3", "p3", OK),
			push("", "p4", Indeterminate), // became message 4
			push("", "p5", Indeterminate), // never landed
			push("", "p6", Failed),
			push("7", "p7", OK), push("8", "p8", OK),
		},
		Deliveries: []Delivery{
			deliver("w1", "1", "p1", "r1", 10, NoAck, 0, ""),      // w1 crashes at 15
			deliver("w2", "1", "p1", "r2", 20, Acked, 25, OK),     //
			deliver("w2", "2", "p2", "r3", 30, Nacked, 31, OK),    //
			deliver("w3", "2", "p2", "r4", 32, Acked, 40, OK),     //
			deliver("w3", "3", "p3", "r5", 41, Acked, 70, Failed), // expired at 50, so refused
			deliver("w1", "3", "p3", "r6", 60, Acked, 65, OK),     //
			deliver("w2", "4", "p4", "r7", 70, Acked, 71, Indeterminate),
			deliver("w2", "7", "p7", "r8", 80, NoAck, 0, ""), // deadline at 90
			deliver("w3", "7", "p7", "r9", 95, Acked, 96, OK),
		},
		Crashes:  []Crash{{"w1", ms(15)}},
		Expiries: []Expiry{{"r5", ms(50)}},
		// Message 9, dead-lettered and its payload not read, can only be p5.
		Final: QueueContents{Ready: []Message{{ID: "8"}}, Dead: []Message{{ID: "9"}}},
	}
}

func TestQueueGoodHistory(t *testing.T) {
	h := goodQueue()
	h.Deliveries[7].Deadline = ms(90)
	wantKinds(t, must[[]Anomaly](t)(CheckQueue(h)))
}

func TestQueueLost(t *testing.T) {
	h := goodQueue()
	h.Deliveries[7].Deadline = ms(90)
	h.Final.Ready = nil // message 8 vanished
	h.Deliveries[5].AckResult = Failed
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindLost, KindLost)
	wantText(t, a, KindLost, "message 8 was pushed ok but never delivered")
	wantText(t, a, KindLost, "message 3 was delivered 2 times")
}

func TestQueueUnexpected(t *testing.T) {
	h := QueueHistory{
		Pushes: []Push{push("1", "p1", OK), push("", "p2", Failed)},
		Deliveries: []Delivery{
			deliver("w", "1", "p1", "r1", 1, Acked, 2, OK),
			deliver("w", "5", "p5", "r2", 3, Acked, 4, OK), // never pushed
			deliver("w", "6", "p2", "r3", 5, Acked, 6, OK), // push failed
			deliver("w", "7", "p1", "r4", 7, Acked, 8, OK), // a second copy of message 1
			deliver("w", "7", "p1", "r5", 9, NoAck, 0, ""), // reported once per message
		},
		Final: QueueContents{InFlight: []Message{{ID: "8"}}},
	}
	h.Deliveries[3].Deadline = ms(8)
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindUnexpected, KindUnexpected, KindUnexpected, KindUnexpected)
	wantText(t, a, KindUnexpected, "message 5", "never pushed")
	wantText(t, a, KindUnexpected, "message 6", "its push failed")
	wantText(t, a, KindUnexpected, "message 7", "payload of message 1")
	wantText(t, a, KindUnexpected, "message 8", "in flight at the end")
}

func TestQueueCorruptPayload(t *testing.T) {
	h := QueueHistory{
		Pushes:     []Push{push("1", "p1", OK)},
		Deliveries: []Delivery{deliver("w", "1", "garbled", "r1", 1, Acked, 2, OK)},
	}
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindCorrupt)
	wantText(t, a, KindCorrupt, `payload "garbled", pushed as "p1"`)
}

func TestQueueDuplicates(t *testing.T) {
	base := func() QueueHistory {
		return QueueHistory{
			Pushes: []Push{push("1", "p1", OK)},
			Deliveries: []Delivery{
				deliver("w1", "1", "p1", "r1", 10, NoAck, 0, ""),
				deliver("w2", "1", "p1", "r2", 20, Acked, 21, OK),
			},
		}
	}
	explained := map[string]func(*QueueHistory){
		"crash":    func(h *QueueHistory) { h.Crashes = []Crash{{"w1", ms(15)}} },
		"expiry":   func(h *QueueHistory) { h.Expiries = []Expiry{{"r1", ms(20)}} },
		"deadline": func(h *QueueHistory) { h.Deliveries[0].Deadline = ms(19) },
		"nack": func(h *QueueHistory) {
			h.Deliveries[0].Ack, h.Deliveries[0].End, h.Deliveries[0].AckResult = Nacked, ms(12), Indeterminate
		},
	}
	for name, explain := range explained {
		h := base()
		explain(&h)
		if a := must[[]Anomaly](t)(CheckQueue(h)); len(a) != 0 {
			t.Errorf("%s: %v, want none", name, a)
		}
	}
	unexplained := map[string]func(*QueueHistory){
		"nothing":          func(*QueueHistory) {},
		"crash before":     func(h *QueueHistory) { h.Crashes = []Crash{{"w1", ms(5)}} },
		"crash after":      func(h *QueueHistory) { h.Crashes = []Crash{{"w1", ms(25)}} },
		"crash of another": func(h *QueueHistory) { h.Crashes = []Crash{{"w2", ms(15)}} },
		"expiry after":     func(h *QueueHistory) { h.Expiries = []Expiry{{"r1", ms(21)}} },
		"deadline after":   func(h *QueueHistory) { h.Deliveries[0].Deadline = ms(30) },
		"nack refused": func(h *QueueHistory) {
			h.Deliveries[0].Ack, h.Deliveries[0].End, h.Deliveries[0].AckResult = Nacked, ms(12), Failed
		},
		"nack after": func(h *QueueHistory) {
			h.Deliveries[0].Ack, h.Deliveries[0].End, h.Deliveries[0].AckResult = Nacked, ms(22), OK
		},
		"ack refused": func(h *QueueHistory) {
			h.Deliveries[0].Ack, h.Deliveries[0].End, h.Deliveries[0].AckResult = Acked, ms(12), Failed
		},
		"expiry of another":   func(h *QueueHistory) { h.Expiries = []Expiry{{"r2", ms(30)}} },
		"redelivered to self": func(h *QueueHistory) { h.Deliveries[1].Worker = "w1" },
		"three, middle ok": func(h *QueueHistory) {
			h.Crashes = []Crash{{"w1", ms(15)}}
			h.Deliveries = append(h.Deliveries, deliver("w3", "1", "p1", "r3", 30, NoAck, 0, ""))
		},
		"acked, then redelivered": func(h *QueueHistory) {
			h.Deliveries[0].Ack, h.Deliveries[0].End, h.Deliveries[0].AckResult = Acked, ms(12), OK
		},
	}
	for name, spoil := range unexplained {
		h := base()
		spoil(&h)
		a := must[[]Anomaly](t)(CheckQueue(h))
		if name == "three, middle ok" {
			// w2 acked ok at 21, yet the message came back at 30.
			wantKinds(t, a, KindDuplicate)
			wantText(t, a, KindDuplicate, "message 1 to w3", "acked ok")
			continue
		}
		wantKinds(t, a, KindDuplicate)
		wantText(t, a, KindDuplicate, "at 22:13:20.020000000 (reservation r2", "at 22:13:20.010000000 (reservation r1", "had not ended")
	}
}

func TestQueueAckAfterExpiry(t *testing.T) {
	h := QueueHistory{
		Pushes: []Push{push("1", "p1", OK), push("2", "p2", OK)},
		Deliveries: []Delivery{
			deliver("w1", "1", "p1", "r1", 10, Acked, 30, OK), // expired at 20
			deliver("w1", "2", "p2", "r2", 10, Acked, 30, OK), // w2 took it over at 25
			deliver("w2", "2", "p2", "r3", 25, Acked, 26, OK),
		},
		Expiries: []Expiry{{"r1", ms(20)}, {"r2", ms(24)}},
	}
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindAckAfterExpiry, KindAckAfterExpiry)
	wantText(t, a, KindAckAfterExpiry, "reservation r1", "had expired")
	wantText(t, a, KindAckAfterExpiry, "reservation r2", "had expired") // the earlier of the two ends

	// Without the expiry records, the takeover alone shows r2 had ended.
	h.Expiries = h.Expiries[:1]
	a = must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindAckAfterExpiry, KindAckAfterExpiry, KindDuplicate)
	wantText(t, a, KindAckAfterExpiry, "reservation r2", "taken over by the next delivery")

	// Refused, as it should be: only the unexplained takeover remains.
	h.Deliveries[0].AckResult, h.Deliveries[1].AckResult = Failed, Failed
	h.Pushes = h.Pushes[1:]
	h.Deliveries = h.Deliveries[1:]
	a = must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindDuplicate)
}

func TestQueueAckedButPresent(t *testing.T) {
	h := QueueHistory{
		Pushes:     []Push{push("1", "p1", OK), push("2", "p2", OK)},
		Deliveries: []Delivery{deliver("w", "1", "p1", "r1", 1, Acked, 2, OK), deliver("w", "2", "p2", "r2", 3, Acked, 4, Indeterminate)},
		Final:      QueueContents{Ready: []Message{{ID: "1"}, {ID: "2"}}},
	}
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindAckedPresent)
	wantText(t, a, KindAckedPresent, "message 1 was acked ok but is ready")
}

func TestQueueListedTwice(t *testing.T) {
	h := QueueHistory{
		Pushes: []Push{push("1", "p1", OK)},
		Final:  QueueContents{Ready: []Message{{ID: "1"}}, Dead: []Message{{ID: "1"}}},
	}
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindDuplicate)
	wantText(t, a, KindDuplicate, "twice: ready and dead")
}

// Unknown ids without payloads can only be matched to pushes whose answer
// was lost, one each.
func TestQueueIndeterminatePushesWithoutPayloads(t *testing.T) {
	h := QueueHistory{
		Pushes: []Push{push("", "p1", Indeterminate)},
		Final:  QueueContents{Ready: []Message{{ID: "1"}, {ID: "2"}}},
	}
	a := must[[]Anomaly](t)(CheckQueue(h))
	wantKinds(t, a, KindUnexpected)
	wantText(t, a, KindUnexpected, "message 2")
}

func TestQueueBadHistory(t *testing.T) {
	for name, h := range map[string]QueueHistory{
		"ok push without id":   {Pushes: []Push{push("", "p", OK)}},
		"push without outcome": {Pushes: []Push{push("1", "p", "")}},
		"no reservation":       {Deliveries: []Delivery{deliver("w", "1", "p", "", 1, NoAck, 0, "")}},
		"shared reservation":   {Deliveries: []Delivery{deliver("w", "1", "p", "r", 1, NoAck, 0, ""), deliver("w", "1", "p", "r", 2, NoAck, 0, "")}},
		"ack without result":   {Deliveries: []Delivery{deliver("w", "1", "p", "r", 1, Acked, 2, "")}},
		"ack before start":     {Deliveries: []Delivery{deliver("w", "1", "p", "r", 5, Acked, 2, OK)}},
		"unknown ack kind":     {Deliveries: []Delivery{deliver("w", "1", "p", "r", 1, "ackk", 2, OK)}},
	} {
		if _, err := CheckQueue(h); !errors.Is(err, ErrBadHistory) {
			t.Errorf("%s: got %v, want ErrBadHistory", name, err)
		}
	}
}
