package faults

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"time"
)

// FaultGen picks a fault (its kind and targets) at random.
type FaultGen func(r *rand.Rand) Fault

// SoakConfig drives Soak.
type SoakConfig struct {
	Duration         time.Duration // run rounds until this has passed
	MaxRounds        int           // and at most this many (default Duration/MinHold+1)
	MinHold, MaxHold time.Duration // how long each fault stays on (default 0.5 s, 3 s)
	Faults           []FaultGen
	Seed             int64 // 0: from the clock; printed in the report

	// During runs while the fault is on (ops of the workload); ctx ends
	// when the hold is over.
	During func(ctx context.Context, r *rand.Rand)
	// AfterHeal checks the system once the fault is healed (convergence);
	// an error is an anomaly.
	AfterHeal func(ctx context.Context, healed time.Time) error
}

// Soak injects random faults one at a time until Duration has passed:
// pick a generator, inject, run During for the hold, heal, run AfterHeal.
// A fault that fails to inject or heal is an anomaly. Every loop is
// bounded in time and count.
func (h *Harness) Soak(ctx context.Context, rep *Report, cfg SoakConfig) {
	if cfg.MinHold <= 0 {
		cfg.MinHold = 500 * time.Millisecond
	}
	if cfg.MaxHold < cfg.MinHold {
		cfg.MaxHold = max(cfg.MinHold, 3*time.Second)
	}
	if cfg.MaxRounds <= 0 {
		cfg.MaxRounds = int(cfg.Duration/cfg.MinHold) + 1
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	r := rand.New(rand.NewSource(cfg.Seed))
	rep.Note("soak seed %d (BEACON_SOAK_SEED=%d reproduces the choices), duration %s", cfg.Seed, cfg.Seed, cfg.Duration)
	end := time.Now().Add(cfg.Duration)
	rounds := 0
	for ; rounds < cfg.MaxRounds && time.Now().Before(end) && ctx.Err() == nil; rounds++ {
		f := cfg.Faults[r.Intn(len(cfg.Faults))](r)
		if f == nil {
			continue
		}
		hold := cfg.MinHold + time.Duration(r.Int63n(int64(cfg.MaxHold-cfg.MinHold)+1))
		act, err := h.Inject(ctx, f)
		if err != nil {
			rep.Anomaly("round %d: %v", rounds, err)
			continue
		}
		holdCtx, cancel := context.WithTimeout(ctx, hold)
		if cfg.During != nil {
			cfg.During(holdCtx, r)
		}
		<-holdCtx.Done()
		cancel()
		healCtx, cancelHeal := context.WithTimeout(ctx, 2*time.Minute)
		err = act.Heal(healCtx)
		cancelHeal()
		healed := time.Now()
		if err != nil {
			rep.Anomaly("round %d: healing %s: %v", rounds, f, err)
		}
		if cfg.AfterHeal != nil {
			if err := cfg.AfterHeal(ctx, healed); err != nil {
				rep.Anomaly("round %d, after %s: %v", rounds, f, err)
			}
		}
	}
	rep.Note("soak: %d rounds", rounds)
}

// SoakDuration reads BEACON_SOAK (a Go duration) for the long variant;
// short is the default for `go test ./faults/...`.
func SoakDuration(short time.Duration) (time.Duration, error) {
	v := os.Getenv("BEACON_SOAK")
	if v == "" {
		return short, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("BEACON_SOAK=%q: want a duration such as 30m", v)
	}
	return d, nil
}

// SoakSeed reads BEACON_SOAK_SEED (0 when unset: pick from the clock).
func SoakSeed() int64 {
	n, _ := strconv.ParseInt(os.Getenv("BEACON_SOAK_SEED"), 10, 64)
	return n
}

// Pick returns a random element of hosts.
func Pick(r *rand.Rand, hosts []*Host) *Host { return hosts[r.Intn(len(hosts))] }

// NetworkFaults are generators of every network fault over hosts:
// isolate one, split a minority of voters (with a proxy sometimes), cut
// one direction between two, delay (20–150 ms) or lose (10–40 %) a host's
// packets.
func NetworkFaults(voters, all []*Host) []FaultGen {
	return []FaultGen{
		func(r *rand.Rand) Fault { return Isolate(Pick(r, all)) },
		func(r *rand.Rand) Fault {
			side := []*Host{Pick(r, voters)}
			var proxies []*Host
			for _, x := range all {
				if !contains(voters, x) {
					proxies = append(proxies, x)
				}
			}
			if len(proxies) > 0 && r.Intn(2) == 0 {
				side = append(side, Pick(r, proxies))
			}
			return Split(side...)
		},
		func(r *rand.Rand) Fault {
			a := Pick(r, all)
			b := Pick(r, all)
			for b == a {
				b = Pick(r, all)
			}
			return CutOneWay(a, b)
		},
		func(r *rand.Rand) Fault {
			return Delay(Pick(r, all), time.Duration(20+r.Intn(131))*time.Millisecond)
		},
		func(r *rand.Rand) Fault { return Loss(Pick(r, all), float64(10+r.Intn(31))) },
	}
}

// ProcessFaults are generators of every process fault on the hosts'
// agents: kill -9 (healed by a restart), pause the agent, pause the whole
// host, restart.
func ProcessFaults(all []*Host) []FaultGen {
	return []FaultGen{
		func(r *rand.Rand) Fault { return KillAgent(Pick(r, all)) },
		func(r *rand.Rand) Fault { return PauseAgent(Pick(r, all)) },
		func(r *rand.Rand) Fault { return PauseHost(Pick(r, all)) },
		func(r *rand.Rand) Fault { return RestartAgent(Pick(r, all)) },
	}
}

func contains(hosts []*Host, x *Host) bool {
	for _, y := range hosts {
		if y == x {
			return true
		}
	}
	return false
}
