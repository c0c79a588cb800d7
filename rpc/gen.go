package rpc

//go:generate ./gen/protoc.sh api.proto
//go:generate ./gen/protoc.sh agent.proto
//go:generate ./gen/protoc.sh fleet.proto
