package check

// observedOrder checks the register's complete history, when recorded:
// tokens nondecreasing, no value twice, every OK write present, and Final
// its last value.
func (c *fencedChecker) observedOrder() {
	if c.h.Observed == nil {
		return
	}
	seen := map[string]bool{c.h.Initial: true} // the register starts there
	var order []int
	prev := c.h.Initial
	for n, v := range c.h.Observed {
		if v == prev {
			continue // a repeated notification, not a change
		}
		prev = v
		if seen[v] {
			c.add(KindPhantom, "observed value #%d: %q came back after being overwritten", n, v)
			continue
		}
		seen[v] = true
		if i, ok := c.byValue[v]; ok && c.h.Writes[i].Outcome != Failed {
			order = append(order, i)
		}
	}
	c.tokenSequence(order, "in the observed history")
	for _, w := range c.h.Writes {
		if w.Outcome == OK && !seen[w.Value] {
			c.add(KindLostWrite, "%s is missing from the observed history", w)
		}
	}
	if c.h.Final != nil && len(c.h.Observed) > 0 && *c.h.Final != c.h.Observed[len(c.h.Observed)-1] {
		c.add(KindFinal, "final value %q is not the last observed value %q", *c.h.Final, c.h.Observed[len(c.h.Observed)-1])
	}
}

// final checks that the register ended with a value of the highest token
// applied: applied tokens never decrease, so the last write has it.
func (c *fencedChecker) final() {
	if c.h.Final == nil {
		return
	}
	top := -1
	for i, w := range c.h.Writes {
		if c.known[i] && (top < 0 || w.Token > c.h.Writes[top].Token) {
			top = i
		}
	}
	v := *c.h.Final
	if v == c.h.Initial {
		if top >= 0 {
			c.add(KindFinal, "final value is the initial %q, but %s was applied", v, c.h.Writes[top])
		}
		return
	}
	i, ok := c.byValue[v]
	if !ok || c.h.Writes[i].Outcome == Failed {
		return // a phantom, reported already
	}
	if w := c.h.Writes[i]; w.Token < c.h.Writes[top].Token {
		c.add(KindFinal, "final value %q has token %d, but %s was applied", v, w.Token, c.h.Writes[top])
	}
}
