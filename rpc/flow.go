package rpc

import "google.golang.org/grpc"

// FlowWindow is the HTTP/2 flow-control window, per stream and per
// connection, of the API (CLI and client to node) and of node-to-node calls.
//
// A fixed window turns off grpc-go's BDP estimation, which sends a PING
// whenever data arrives and none is outstanding: with small calls that is
// nearly one PING and one ack, each a write on a loopback or LAN socket, per
// call in each direction. On the write benchmark that was about a quarter
// of the client's CPU and a tenth of the servers' (docs/benchmarks.md).
// 1 MiB is what BDP estimation would not exceed on a LAN anyway, and the
// API's messages are small; the links that may be long and carry bundles
// (agent streams, direct provisioning) keep the estimation.
const FlowWindow = 1 << 20

// FlowDialOptions fixes a client's windows at FlowWindow.
func FlowDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(FlowWindow), grpc.WithInitialConnWindowSize(FlowWindow)}
}

// FlowServerOptions fixes a server's windows at FlowWindow.
func FlowServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(FlowWindow), grpc.InitialConnWindowSize(FlowWindow)}
}
