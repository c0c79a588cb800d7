#!/usr/bin/env bash
# Committed-write throughput of hpt next to etcd, on this machine, in one run.
#
# Starts a 3-member etcd cluster (Debian's etcd-server) and a 3-node hpt
# cluster (separate `hpt server` processes), each on loopback with data on
# the same disk, and drives both with the same load shape and the same
# measuring code (package bench): CLIENTS concurrent writers, 256-byte
# values, spread over all members. Prints one JSON line per run and a
# summary with hpt/etcd ratios.
#
#   bench/write-vs-etcd.sh [COUNT] [CLIENTS...]      (default: 20000 64 256)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000}
shift || true
clients=("${@:-64 256}")
[ $# -eq 0 ] && clients=(64 256)

command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
work=$(mktemp -d /var/tmp/hpt-bench.XXXXXX)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/hpt" ./cmd/hpt
(cd bench/etcdload && go build -o "$work/etcdload" .)

# etcd: 3 members.
ecluster=e1=http://127.0.0.1:23011,e2=http://127.0.0.1:23021,e3=http://127.0.0.1:23031
eps=127.0.0.1:23010,127.0.0.1:23020,127.0.0.1:23030
for i in 1 2 3; do
	p=$((23000 + i * 10))
	etcd --name e$i --data-dir "$work/e$i" \
		--listen-client-urls http://127.0.0.1:$p --advertise-client-urls http://127.0.0.1:$p \
		--listen-peer-urls http://127.0.0.1:$((p + 1)) --initial-advertise-peer-urls http://127.0.0.1:$((p + 1)) \
		--initial-cluster "$ecluster" --initial-cluster-state new --log-level error >"$work/e$i.log" 2>&1 &
	pids+=($!)
done

# hpt: 3 server processes from one cluster keystore.
eval "$("$work/hpt" init --out "$work/keys" 2>/dev/null)"
for i in 1 2 3; do
	p=$((24000 + i * 10))
	"$work/hpt" server --name n$i --keystore "$work/keys/cluster.keystore.db" --data-dir "$work/n$i" \
		--listen 127.0.0.1:$p --gossip 127.0.0.1:$((p + 1)) --join 127.0.0.1:24011 \
		--bootstrap-expect 3 --log-level warn >"$work/n$i.log" 2>&1 &
	pids+=($!)
done
export HPT_ADDR=127.0.0.1:24010,127.0.0.1:24020,127.0.0.1:24030

for _ in $(seq 100); do
	"$work/hpt" cluster status >/dev/null 2>&1 && ETCDCTL_API=3 etcdctl --endpoints $eps endpoint health >/dev/null 2>&1 && break
	sleep 0.2
done

echo "# $(date -u +%FT%TZ) $(nproc) cores; count=$count size=256"
for c in "${clients[@]}"; do
	e=$("$work/etcdload" -endpoints $eps -clients "$c" -count "$count" -size 256)
	h=$("$work/hpt" bench write --clients "$c" --count "$count" --size 256 -o json | tr -d ' \n')
	echo "etcd $e"
	echo "hpt  $h"
	python3 - "$e" "$h" <<'PY'
import json, sys
e, h = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"clients={h['clients']}: hpt {h['rate']:.0f}/s p99 {h['p99_ms']:.1f} ms | etcd {e['rate']:.0f}/s p99 {e['p99_ms']:.1f} ms | rate ratio {h['rate']/e['rate']:.2f}x, p99 ratio {h['p99_ms']/e['p99_ms']:.2f}x")
PY
done
