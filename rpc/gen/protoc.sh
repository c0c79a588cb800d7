#!/bin/sh
# Runs protoc (Debian's protobuf-compiler) with the Go generators pinned in
# go.mod. Called by the go:generate directives next to each .proto file:
#   protoc.sh FILE.proto   (from the directory holding FILE.proto)
set -eu
gen=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$gen/../.." && pwd)
command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler" >&2; exit 1; }
exec protoc -I "$root" \
	--plugin=protoc-gen-go="$gen/protoc-gen-go" \
	--plugin=protoc-gen-go-grpc="$gen/protoc-gen-go-grpc" \
	--go_out="$root" --go_opt=module=github.com/hpt-dev/hpt \
	--go-grpc_out="$root" --go-grpc_opt=module=github.com/hpt-dev/hpt \
	"$(pwd | sed "s|^$root/||")/$1"
