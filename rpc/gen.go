package rpc

//go:generate ./gen/protoc.sh api.proto
