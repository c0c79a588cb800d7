package fsm

//go:generate ../rpc/gen/protoc.sh state.proto
