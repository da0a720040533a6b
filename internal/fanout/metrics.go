package fanout

import "github.com/prometheus/client_golang/prometheus"

// cutOffs counts the watchers dropped as too slow, by the bound they
// passed; the registry's subscriptions count here too (CountCutOff).
var cutOffs = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "beacon_watchers_cut_off_total",
	Help: "Watchers (Config.Watch, Election.Observe, Registry.Watch) cut off for leaving too much unread, by the bound passed (watch-buffer: changes, max-watch-buffer-bytes: bytes).",
}, []string{"limit"})

func init() { prometheus.MustRegister(cutOffs) }

// CountCutOff counts a watcher cut off past the bound limit (LimitEvents
// or LimitBytes).
func CountCutOff(limit string) { cutOffs.WithLabelValues(limit).Inc() }
