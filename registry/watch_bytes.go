package registry

import "github.com/beaconhq/beacon/internal/fanout"

// SetWatchBufferBytes bounds the bytes of changes one watcher may leave
// unread (max-watch-buffer-bytes; zero or less: fanout.DefaultMaxBytes),
// for the subscriptions made after it. A watcher past it is cut off, as
// one past subscriptionBuffer changes is.
func (c *Catalog) SetWatchBufferBytes(n int64) {
	if n <= 0 {
		n = fanout.DefaultMaxBytes
	}
	c.maxWatchBytes.Store(n)
}

func (c *Catalog) watchBufferBytes() int64 {
	if n := c.maxWatchBytes.Load(); n > 0 {
		return n
	}
	return fanout.DefaultMaxBytes
}

// instanceOverhead is about what an Instance's struct, its slices' and
// map's headers and an Event take besides the instance's strings.
const instanceOverhead = 256

// instanceBytes is about what a queued change of in holds.
func instanceBytes(in *Instance) int64 {
	if in == nil {
		return instanceOverhead
	}
	n := instanceOverhead + len(in.ID) + len(in.Service) + len(in.Node) + len(in.Address) + len(in.Status) + len(in.Output)
	for _, t := range in.Tags {
		n += 16 + len(t)
	}
	for k, v := range in.Meta {
		n += 32 + len(k) + len(v)
	}
	return int64(n)
}
