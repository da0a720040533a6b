package apifuzz

import (
	"context"
	"hash/fnv"
	"sort"
	"time"

	"github.com/beaconhq/beacon/api/beaconpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Method is one unary method of the agent API.
type Method struct {
	FullName      string // "/beacon.v1.Lock/Acquire"
	input, output protoreflect.MessageType
}

// NewRequest is an empty request of the method's type.
func (m Method) NewRequest() proto.Message { return m.input.New().Interface() }

// fuzzedFiles are the services whose requests are fuzzed: every unary
// method of them, found from the descriptors so that a method added later
// is fuzzed too. Cluster (Leave, RemoveMember would stop the agent under
// test) and Session (a stream) are left out.
var fuzzedFiles = []protoreflect.FileDescriptor{
	beaconpb.File_registry_proto, beaconpb.File_lock_proto, beaconpb.File_election_proto,
	beaconpb.File_queue_proto, beaconpb.File_config_proto, beaconpb.File_barrier_proto,
}

// Methods are the fuzzed methods, sorted by name.
func Methods() ([]Method, error) {
	var out []Method
	for _, fd := range fuzzedFiles {
		for i := 0; i < fd.Services().Len(); i++ {
			svc := fd.Services().Get(i)
			for j := 0; j < svc.Methods().Len(); j++ {
				md := svc.Methods().Get(j)
				if md.IsStreamingClient() || md.IsStreamingServer() {
					continue
				}
				in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
				if err != nil {
					return nil, err
				}
				resp, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
				if err != nil {
					return nil, err
				}
				out = append(out, Method{FullName: "/" + string(svc.FullName()) + "/" + string(md.Name()), input: in, output: resp})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FullName < out[j].FullName })
	return out, nil
}

// Pick is the method named name, or, for a name that is none (a fuzzed
// one), the method its hash falls on: seeds keep their method whatever
// methods are added, and the fuzzer still reaches every method.
func Pick(methods []Method, name string) Method {
	for _, m := range methods {
		if m.FullName == name {
			return m
		}
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return methods[h.Sum32()%uint32(len(methods))]
}

// SessionPlaceholder, as a request's session_id, stands for the session
// the fuzzing agent keeps open: without it nearly every call that holds
// something would stop at "no such session".
const SessionPlaceholder = "@"

// fillSession replaces the placeholder in every session_id field of m,
// nested messages included.
func fillSession(m protoreflect.Message, id string) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Name() == "session_id" && fd.Kind() == protoreflect.StringKind && !fd.IsList() && v.String() == SessionPlaceholder:
			m.Set(fd, protoreflect.ValueOfString(id))
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			fillSession(v.Message(), id)
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			for i := 0; i < v.List().Len(); i++ {
				fillSession(v.List().Get(i).Message(), id)
			}
		}
		return true
	})
}

// CallTimeout bounds each fuzzed call: a request that waits (Acquire,
// Campaign, Reserve with a long timeout) ends in DeadlineExceeded, not a
// blocked fuzzer.
const CallTimeout = 2 * time.Second

// Call sends req to method on the agent, its session placeholder filled,
// and returns the response and the call's status code.
func (a *Agent) Call(method Method, req proto.Message) (proto.Message, codes.Code, error) {
	fillSession(req.ProtoReflect(), a.SessionID)
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	resp := method.output.New().Interface()
	err := a.Conn.Invoke(ctx, method.FullName, req, resp)
	return resp, status.Code(err), err
}

// cleanUp undoes what would pile up in a long run and load the host: a
// registration's health check keeps running while it lives, so each
// registration made is removed at once.
func (a *Agent) cleanUp(resp proto.Message) {
	r, ok := resp.(*beaconpb.RegisterResponse)
	if !ok || r.Instance == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), CallTimeout)
	defer cancel()
	_, _ = beaconpb.NewRegistryClient(a.Conn).Deregister(ctx, &beaconpb.DeregisterRequest{
		Service: r.Instance.Service, Id: r.Instance.Id, SessionId: a.SessionID})
}

// Unclassified says whether a code means the server did not classify
// what went wrong: a recovered panic (Internal), an error passed through
// without a code (Unknown), or worse.
func Unclassified(c codes.Code) bool {
	switch c {
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return true
	}
	return false
}
