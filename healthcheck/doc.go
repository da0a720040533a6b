// Package healthcheck runs one health check for one service instance and
// reports the instance's status: passing, warning or critical.
//
// A Definition says what to check (an HTTP URL, a TCP address, a gRPC
// health endpoint, or a TTL the application must keep alive with
// heartbeats) and how often. Start turns a normalized Definition into a
// Monitor, which runs the check on its own goroutine, damps flapping with
// the success/failure thresholds, and calls back when the status or output
// changes and when the instance has been critical long enough to be
// deregistered.
//
// The package knows nothing about registries, etcd or DNS: the registry
// owns the instance and writes whatever the Monitor reports. That keeps
// the check logic testable against plain sockets.
package healthcheck
