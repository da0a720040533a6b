package dataquota

import "context"

// class is whose write it is, carried in the write's context: the
// guard's interceptors mark every API call's context, and what a call
// writes to etcd, through the guarded client, is judged by its class.
type class int

const (
	classAgent  class = iota // the agent's own work (no API call): never refused
	classClient              // a client's call: refused past the client line
	classData                // a client's call writing data: refused past the data line
)

type classKey struct{}

func withClass(ctx context.Context, c class) context.Context {
	return context.WithValue(ctx, classKey{}, c)
}

func classOf(ctx context.Context) class {
	c, _ := ctx.Value(classKey{}).(class)
	return c
}

// FromClient says whether ctx is an API call's (or was derived from one):
// what it writes is a client's.
func FromClient(ctx context.Context) bool { return classOf(ctx) != classAgent }

// ForClient marks ctx as a client's, for the writes the agent makes on a
// client's behalf after its call (the registry rewriting the status of
// an instance a client registered): they are judged at the client line
// like the call that caused them.
func ForClient(ctx context.Context) context.Context {
	if classOf(ctx) != classAgent {
		return ctx
	}
	return withClass(ctx, classClient)
}

// As gives ctx the class of from: for a write that a goroutine of the
// agent makes on behalf of a call (a batch committed for its callers),
// so that it is judged as the call would be.
func As(ctx, from context.Context) context.Context {
	if c := classOf(from); c != classOf(ctx) {
		return withClass(ctx, c)
	}
	return ctx
}

type freeingKey struct{}

// Freeing marks ctx's writes as ones that make room, passed at both lines
// like a delete though they may put a little: an ack deletes its message
// and, in the same transaction, may open its queue's gate (a small
// record). Consumers must be able to drain a queue however full etcd is.
func Freeing(ctx context.Context) context.Context {
	return context.WithValue(ctx, freeingKey{}, true)
}

func freeing(ctx context.Context) bool {
	f, _ := ctx.Value(freeingKey{}).(bool)
	return f
}
