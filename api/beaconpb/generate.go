// Package beaconpb holds the agent's gRPC API: the .proto files and the code
// generated from them. Run `go generate ./api/...` after editing a .proto
// (needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH).
package beaconpb

//go:generate protoc --proto_path=. --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative cluster.proto session.proto registry.proto lock.proto election.proto queue.proto config.proto acl.proto barrier.proto
