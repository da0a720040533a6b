package faults

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Network faults are rules in the FORWARD chain of the bridge's namespace
// (br_netfilter hands bridged IPv4 to iptables there), so a cut drops
// packets silently in the "switch", the way a real partition does: no
// host sees an error, only silence. Each direction is its own rule, which
// makes one-way cuts exact. Drops go first in the chain; delays (NFQUEUE)
// go last, because a packet a delay queue accepts leaves the chain.

// rule is one FORWARD rule of a fault.
type rule struct {
	head bool   // insert at the top (drops) instead of appending (queues)
	spec string // match and target, e.g. "-s 10.77.0.1/32 -j DROP"
}

func dropRule(tag, match string) rule {
	return rule{head: true, spec: match + " -m comment --comment " + tag + " -j DROP"}
}

// applyRules adds or deletes rules in one iptables-restore transaction.
func (h *Harness) applyRules(ctx context.Context, add bool, rules []rule) error {
	if len(rules) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("*filter\n")
	for i := range rules {
		r := rules[i]
		if !add {
			r = rules[len(rules)-1-i]
		}
		switch {
		case !add:
			b.WriteString("-D FORWARD ")
		case r.head:
			b.WriteString("-I FORWARD ")
		default:
			b.WriteString("-A FORWARD ")
		}
		b.WriteString(r.spec + "\n")
	}
	b.WriteString("COMMIT\n")
	_, err := command(ctx, []byte(b.String()), "ip", "netns", "exec", h.brNS, "iptables-restore", "--noflush")
	return err
}

// ForwardRules lists the bridge's FORWARD chain (for debugging and tests).
func (h *Harness) ForwardRules(ctx context.Context) (string, error) {
	return command(ctx, nil, "ip", "netns", "exec", h.brNS, "iptables", "-w", "-S", "FORWARD")
}

// netFault is a cut made of drop rules.
type netFault struct {
	h     *Harness
	desc  string
	rules func() []rule // computed at Inject (Split takes "the rest" then)
	added []rule
}

func (f *netFault) String() string { return f.desc }

func (f *netFault) Inject(ctx context.Context) error {
	rs := f.rules()
	if err := f.h.applyRules(ctx, true, rs); err != nil {
		return err
	}
	f.added = rs
	return nil
}

func (f *netFault) Heal(ctx context.Context) error {
	if f.added == nil {
		return nil
	}
	if err := f.h.applyRules(ctx, false, f.added); err != nil {
		return err
	}
	f.added = nil
	return nil
}

func harnessOf(hosts []*Host) *Harness {
	for _, x := range hosts {
		if x != nil {
			return x.h
		}
	}
	panic("faults: a fault needs at least one host")
}

func names(hosts []*Host) string {
	var s []string
	for _, x := range hosts {
		s = append(s, x.Name)
	}
	return strings.Join(s, "+")
}

// Isolate cuts each host off from every other host, in both directions.
// Loopback inside each host keeps working: its CLI and DNS still reach
// its own agent.
func Isolate(hosts ...*Host) Fault {
	h := harnessOf(hosts)
	tag := h.nextTag()
	return &netFault{h: h, desc: "isolate " + names(hosts), rules: func() []rule {
		var rs []rule
		for _, x := range hosts {
			rs = append(rs, dropRule(tag, "-s "+x.IP+"/32"), dropRule(tag, "-d "+x.IP+"/32"))
		}
		return rs
	}}
}

// Partition cuts every host of a from every host of b, both directions;
// hosts on the same side still talk.
func Partition(a, b []*Host) Fault {
	h := harnessOf(append(append([]*Host{}, a...), b...))
	tag := h.nextTag()
	return &netFault{h: h, desc: fmt.Sprintf("partition %s | %s", names(a), names(b)), rules: func() []rule {
		return partitionRules(tag, a, b)
	}}
}

func partitionRules(tag string, a, b []*Host) []rule {
	var rs []rule
	for _, x := range a {
		for _, y := range b {
			rs = append(rs, dropRule(tag, "-s "+x.IP+"/32 -d "+y.IP+"/32"), dropRule(tag, "-s "+y.IP+"/32 -d "+x.IP+"/32"))
		}
	}
	return rs
}

// Split partitions the given hosts (say a minority) from every other host
// the harness has when the fault is injected.
func Split(side ...*Host) Fault {
	h := harnessOf(side)
	tag := h.nextTag()
	return &netFault{h: h, desc: "split " + names(side) + " | rest", rules: func() []rule {
		in := map[*Host]bool{}
		for _, x := range side {
			in[x] = true
		}
		var rest []*Host
		for _, x := range h.Hosts() {
			if !in[x] {
				rest = append(rest, x)
			}
		}
		return partitionRules(tag, side, rest)
	}}
}

// CutOneWay drops every packet from src to dst; dst still reaches src.
// (TCP needs both ways, so no connection between them works in either
// direction; one-way UDP from dst to src does.)
func CutOneWay(src, dst *Host) Fault {
	h := src.h
	tag := h.nextTag()
	return &netFault{h: h, desc: fmt.Sprintf("cut %s -> %s", src.Name, dst.Name), rules: func() []rule {
		return []rule{dropRule(tag, "-s "+src.IP+"/32 -d "+dst.IP+"/32")}
	}}
}

// shapeFault delays or drops a share of the packets to and from a host:
// tc netem on both ends of its veth when the kernel has sch_netem, else
// iptables (statistic drops, and an NFQUEUE the harness holds packets in).
type shapeFault struct {
	h     *Harness
	x     *Host
	delay time.Duration
	loss  float64 // 0..1
	tag   string

	mech    string // "netem" or "iptables"
	rules   []rule
	delayer *delayer
}

// Delay holds every packet to or from the host for d (once per packet,
// also between two delayed hosts; with netem, once per veth crossed).
func Delay(x *Host, d time.Duration) Fault {
	return &shapeFault{h: x.h, x: x, delay: d, tag: x.h.nextTag()}
}

// Loss drops each packet to or from the host with probability pct/100.
func Loss(x *Host, pct float64) Fault {
	return &shapeFault{h: x.h, x: x, loss: pct / 100, tag: x.h.nextTag()}
}

func (f *shapeFault) String() string {
	var parts []string
	if f.delay > 0 {
		parts = append(parts, "delay "+f.delay.String())
	}
	if f.loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %.0f%%", f.loss*100))
	}
	s := strings.Join(parts, " ") + " " + f.x.Name
	if f.mech != "" {
		s += " (" + f.mech + ")"
	}
	return s
}

func (f *shapeFault) Inject(ctx context.Context) error {
	if f.h.netem {
		f.mech = "netem"
		return f.h.shape(ctx, f.x, f, true)
	}
	f.mech = "iptables"
	var rs []rule
	if f.loss > 0 {
		stat := fmt.Sprintf(" -m statistic --mode random --probability %.4f", f.loss)
		rs = append(rs, dropRule(f.tag, "-s "+f.x.IP+"/32"+stat), dropRule(f.tag, "-d "+f.x.IP+"/32"+stat))
	}
	if f.delay > 0 {
		q := f.h.nextQueue()
		d, err := startDelayer(f.h.brPath(), q, f.delay)
		if err != nil {
			return fmt.Errorf("delay queue: %v", err)
		}
		f.delayer = d
		target := fmt.Sprintf(" -m comment --comment %s -j NFQUEUE --queue-num %d --queue-bypass", f.tag, q)
		rs = append(rs, rule{spec: "-s " + f.x.IP + "/32" + target}, rule{spec: "-d " + f.x.IP + "/32" + target})
	}
	if err := f.h.applyRules(ctx, true, rs); err != nil {
		if f.delayer != nil {
			f.delayer.Close()
			f.delayer = nil
		}
		return err
	}
	f.rules = rs
	return nil
}

func (f *shapeFault) Heal(ctx context.Context) error {
	if f.mech == "netem" {
		return f.h.shape(ctx, f.x, f, false)
	}
	err := f.h.applyRules(ctx, false, f.rules)
	if err == nil {
		f.rules = nil
	}
	if f.delayer != nil {
		f.delayer.Close() // after the rules are gone: it lets what it holds go
		f.delayer = nil
	}
	return err
}

// shape adds or removes f from the host's netem settings and applies the
// sum of what remains to both ends of its veth.
func (h *Harness) shape(ctx context.Context, x *Host, f *shapeFault, add bool) error {
	h.mu.Lock()
	list := h.shapes[x]
	if add {
		list = append(list, f)
	} else {
		for i, g := range list {
			if g == f {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
	}
	h.shapes[x] = list
	var delay time.Duration
	keep := 1.0
	for _, g := range list {
		delay += g.delay
		keep *= 1 - g.loss
	}
	h.mu.Unlock()

	ends := [][]string{{"-n", x.NS, "qdisc", "%s", "dev", "eth0", "root"}, {"-n", h.brNS, "qdisc", "%s", "dev", x.port(), "root"}}
	for _, end := range ends {
		args := append([]string{}, end...)
		if len(list) == 0 {
			args[3] = "del"
			if _, err := command(ctx, nil, "tc", args...); err != nil && !strings.Contains(err.Error(), "No such file") &&
				!strings.Contains(err.Error(), "Cannot delete qdisc with handle of zero") {
				return err
			}
			continue
		}
		args[3] = "replace"
		args = append(args, "netem")
		if delay > 0 {
			args = append(args, "delay", fmt.Sprintf("%dus", delay.Microseconds()))
		}
		if keep < 1 {
			args = append(args, "loss", fmt.Sprintf("%.4f%%", (1-keep)*100))
		}
		if _, err := command(ctx, nil, "tc", args...); err != nil {
			return err
		}
	}
	return nil
}
