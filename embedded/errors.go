package embedded

import "errors"

// Errors that stop an agent at start. Each is wrapped with the specifics and
// with what the operator can do about it.
var (
	// ErrRemoved: this data dir's member was removed from its cluster.
	ErrRemoved = errors.New("this member was removed from the cluster")
	// ErrForeignDataDir: the data dir holds a member of another cluster.
	ErrForeignDataDir = errors.New("the data dir belongs to another cluster")
	// ErrNameMismatch: the data dir holds a member of another name.
	ErrNameMismatch = errors.New("the data dir belongs to another node")
	// ErrUnreachable: none of the given cluster URLs answered.
	ErrUnreachable = errors.New("cannot reach the cluster")
	// ErrPeerURLTaken: a voter with this node's peer URL already exists.
	ErrPeerURLTaken = errors.New("the peer URL is taken")
	// ErrNameTaken: another member already uses this node's name.
	ErrNameTaken = errors.New("the name is taken")
	// ErrStopped: the embedded member stopped on its own.
	ErrStopped = errors.New("the embedded etcd member stopped")
)
