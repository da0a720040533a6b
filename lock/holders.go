package lock

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Info is the value beacon writes in a contender's key, so that whoever
// looks at etcd (or waits for the lock) can tell who holds it. etcdctl
// writes an empty value. It never holds the session id: that id is the
// secret that proves ownership of the grant, and anyone who can read etcd
// (or ask TryAcquire) would learn it. The key's last segment, the lease
// id, names the holder instead.
type Info struct {
	Node        string `json:"node,omitempty"`
	SessionName string `json:"name,omitempty"`
	Limit       int    `json:"limit,omitempty"`
}

// Holder is one key in a lock's line.
type Holder struct {
	Key   string
	Token int64
	Info  Info
}

func (h Holder) String() string {
	lease := h.Key[strings.LastIndexByte(h.Key, '/')+1:]
	switch {
	case h.Info.Node != "" && h.Info.SessionName != "":
		return fmt.Sprintf("%s on %s (lease %s, token %d)", h.Info.SessionName, h.Info.Node, lease, h.Token)
	case h.Info.Node != "":
		return fmt.Sprintf("lease %s on %s (token %d)", lease, h.Info.Node, h.Token)
	}
	return fmt.Sprintf("%s (token %d)", h.Key, h.Token)
}

// Holders lists the first limit keys under prefix by create revision:
// the holders of the lock, or of its semaphore's slots.
func Holders(ctx context.Context, cli *clientv3.Client, prefix string, limit int) ([]Holder, error) {
	resp, err := cli.Get(ctx, prefix+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(int64(max(limit, 1))))
	if err != nil {
		return nil, err
	}
	out := make([]Holder, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		h := Holder{Key: string(kv.Key), Token: kv.CreateRevision}
		_ = json.Unmarshal(kv.Value, &h.Info) // etcdctl's empty value, or anything else: no info
		out = append(out, h)
	}
	return out, nil
}

// describe is "held by A, B" for error messages.
func describe(hs []Holder) string {
	if len(hs) == 0 {
		return "no holder now"
	}
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.String()
	}
	return "held by " + strings.Join(parts, ", ")
}
