// Package e2e holds the multi-process tests: real beacon agents on
// loopback addresses, queried with real clients (the CLI, gRPC, clientv3,
// etcdctl, DNS).
package e2e
