package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/beaconhq/beacon/healthcheck"
	"github.com/beaconhq/beacon/internal/rpcerr"
	"github.com/spf13/cast"
)

// ParseServiceBlocks reads the services: list of the agent's config file.
// Errors name the block and field, e.g. "services[1].port".
func ParseServiceBlocks(raw any) ([]Registration, error) {
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, &FieldError{Field: "services", Msg: "must be a list of service blocks"}
	}
	var out []Registration
	for i, item := range list {
		block, ok := item.(map[string]any)
		if !ok {
			return nil, &FieldError{Field: fmt.Sprintf("services[%d]", i), Msg: "must be a mapping with name, port, ..."}
		}
		r, err := parseBlock(block)
		if err != nil {
			return nil, rpcerr.Within(fmt.Sprintf("services[%d]", i), err)
		}
		out = append(out, r)
	}
	return out, nil
}

var blockKeys = map[string]bool{"name": true, "id": true, "address": true, "port": true, "tags": true, "meta": true,
	"weight": true, "priority": true, "check": true}
var checkKeys = map[string]bool{"http": true, "tcp": true, "grpc": true, "ttl": true, "interval": true, "timeout": true,
	"success-before-passing": true, "failures-before-critical": true, "deregister-critical-after": true}

func parseBlock(b map[string]any) (Registration, error) {
	var r Registration
	for k := range b {
		if !blockKeys[k] {
			return r, &FieldError{Field: k, Msg: "unknown key"}
		}
	}
	in := &r.Instance
	in.Service = cast.ToString(b["name"])
	in.ID = cast.ToString(b["id"])
	in.Address = cast.ToString(b["address"])
	var err error
	if in.Port, err = cast.ToIntE(b["port"]); err != nil {
		return r, &FieldError{Field: "port", Msg: fmt.Sprintf("%v is not a number", b["port"])}
	}
	if in.Weight, err = cast.ToIntE(orZero(b["weight"])); err != nil {
		return r, &FieldError{Field: "weight", Msg: fmt.Sprintf("%v is not a number", b["weight"])}
	}
	if in.Priority, err = cast.ToIntE(orZero(b["priority"])); err != nil {
		return r, &FieldError{Field: "priority", Msg: fmt.Sprintf("%v is not a number", b["priority"])}
	}
	if in.Tags, err = cast.ToStringSliceE(orEmptyList(b["tags"])); err != nil {
		return r, &FieldError{Field: "tags", Msg: "must be a list of strings"}
	}
	if b["meta"] != nil {
		if in.Meta, err = cast.ToStringMapStringE(b["meta"]); err != nil {
			return r, &FieldError{Field: "meta", Msg: "must map strings to strings"}
		}
	}
	if c, ok := b["check"]; ok && c != nil {
		cm, ok := c.(map[string]any)
		if !ok {
			return r, &FieldError{Field: "check", Msg: "must be a mapping"}
		}
		if r.Check, err = parseCheck(cm); err != nil {
			return r, rpcerr.Within("check", err)
		}
	}
	// Validate now, so a bad block stops the agent at start.
	probe := r.Instance
	probe.Tags = append([]string(nil), r.Instance.Tags...)
	if err := probe.Normalize("node", "127.0.0.1"); err != nil {
		if fe, ok := err.(*FieldError); ok && fe.Field == "service" {
			return r, &FieldError{Field: "name", Msg: fe.Msg}
		}
		return r, err
	}
	def := r.Check
	if err := def.Normalize(); err != nil {
		return r, rpcerr.Within("check", err)
	}
	r.Owner = OwnerConfig
	return r, nil
}

func parseCheck(m map[string]any) (healthcheck.Definition, error) {
	var d healthcheck.Definition
	for k := range m {
		if !checkKeys[k] {
			return d, &FieldError{Field: k, Msg: "unknown key"}
		}
	}
	d.HTTP, d.TCP, d.GRPC = cast.ToString(m["http"]), cast.ToString(m["tcp"]), cast.ToString(m["grpc"])
	durations := map[string]*time.Duration{"ttl": &d.TTL, "interval": &d.Interval, "timeout": &d.Timeout, "deregister-critical-after": &d.DeregisterCriticalAfter}
	for k, p := range durations {
		if v, ok := m[k]; ok && v != nil {
			dur, err := cast.ToDurationE(v)
			if err != nil {
				return d, &FieldError{Field: k, Msg: fmt.Sprintf("%v is not a duration like 10s", v)}
			}
			*p = dur
		}
	}
	ints := map[string]*int{"success-before-passing": &d.SuccessBeforePassing, "failures-before-critical": &d.FailuresBeforeCritical}
	for k, p := range ints {
		if v, ok := m[k]; ok && v != nil {
			n, err := cast.ToIntE(v)
			if err != nil {
				return d, &FieldError{Field: k, Msg: fmt.Sprintf("%v is not a number", v)}
			}
			*p = n
		}
	}
	return d, nil
}

func orZero(v any) any {
	if v == nil {
		return 0
	}
	return v
}

func orEmptyList(v any) any {
	if v == nil {
		return []string{}
	}
	return v
}

// unchangedConfig says whether the config-owned registration of in's key
// already is in (normalized) with check.
func (l *Local) unchangedConfig(in Instance, check healthcheck.Definition) bool {
	if check.Normalize() != nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.regs[regKey(in.Service, in.ID)]
	if cur == nil || cur.Owner != OwnerConfig || cur.Check != check {
		return false
	}
	in.Status, in.Output = cur.Instance.Status, cur.Instance.Output
	return sameInstance(&cur.Instance, &in)
}

// SyncConfig makes the config-owned registrations exactly regs: new and
// changed blocks are registered, dropped ones deregistered. It is how a
// SIGHUP reload takes effect.
func (l *Local) SyncConfig(ctx context.Context, regs []Registration) error {
	want := map[string]bool{}
	var errs []string
	for _, r := range regs {
		// Count the block as wanted whether or not its write succeeds now:
		// a transient error must not deregister a running instance.
		probe := r.Instance
		probe.Tags = append([]string(nil), r.Instance.Tags...)
		if probe.Normalize(l.node, l.nodeAddr) == nil {
			want[regKey(probe.Service, probe.ID)] = true
			// An unchanged block is left alone: registering it again would
			// restart its check, and with it the clock of
			// deregister-critical-after and the thresholds' counts, so
			// that reloads every minute would keep a dead instance forever.
			if l.unchangedConfig(probe, r.Check) {
				continue
			}
		}
		if _, _, err := l.Register(ctx, r.Instance, r.Check, OwnerConfig); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", r.Instance.Service, err))
		}
	}
	for _, r := range l.Registrations() {
		if r.Owner == OwnerConfig && !want[regKey(r.Instance.Service, r.Instance.ID)] {
			if err := l.Deregister(ctx, r.Instance.Service, r.Instance.ID); err != nil {
				errs = append(errs, err.Error())
			}
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return fmt.Errorf("services from the config file: %s", strings.Join(errs, "; "))
	}
	return nil
}
