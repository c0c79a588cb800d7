#!/usr/bin/env bash
# Committed-write throughput of hpt next to etcd, on this machine, in one run.
#
# Starts two 3-member etcd clusters (Debian's etcd-server): one on plain TCP,
# as etcd is most often benchmarked, and one with TLS on client and peer
# traffic and client certificates required, as hpt always runs; and a
# 3-node hpt cluster (separate `hpt server` processes). All on loopback
# with data on the same disk, driven one after the other with the same load
# shape and the same measuring code (package bench): CLIENTS concurrent
# writers, 256-byte values, spread over all members. Prints one JSON line
# per run and a summary with hpt/etcd ratios.
#
#   bench/write-vs-etcd.sh [COUNT] [CLIENTS...]      (default: 20000 64 256)
#
# HPT_GOGC, if set, is passed to the hpt servers alone as GOGC (etcd keeps
# its default), to compare garbage-collector settings.
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

# Certificates for the TLS etcd: one CA, one certificate for members and
# the load generator (ECDSA P-256, SAN 127.0.0.1).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
	-keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=etcd \
	-keyout "$work/etcd.key" -out "$work/etcd.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$work/ext"
openssl x509 -req -in "$work/etcd.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
	-extfile "$work/ext" -out "$work/etcd.crt" 2>/dev/null

# etcd: 3 members, plain (base port 23000) and TLS (base port 23100).
start_etcd() { # base scheme extra-flags...
	local base=$1 scheme=$2
	shift 2
	local cluster=""
	for i in 1 2 3; do cluster+="${cluster:+,}e$i=$scheme://127.0.0.1:$((base + i * 10 + 1))"; done
	for i in 1 2 3; do
		local p=$((base + i * 10))
		etcd --name e$i --data-dir "$work/e$base-$i" \
			--listen-client-urls $scheme://127.0.0.1:$p --advertise-client-urls $scheme://127.0.0.1:$p \
			--listen-peer-urls $scheme://127.0.0.1:$((p + 1)) --initial-advertise-peer-urls $scheme://127.0.0.1:$((p + 1)) \
			--initial-cluster "$cluster" --initial-cluster-state new --log-level error "$@" >"$work/e$base-$i.log" 2>&1 &
		pids+=($!)
	done
}
start_etcd 23000 http
epids=("${pids[@]: -3}")
start_etcd 23100 https \
	--cert-file "$work/etcd.crt" --key-file "$work/etcd.key" --client-cert-auth --trusted-ca-file "$work/ca.crt" \
	--peer-cert-file "$work/etcd.crt" --peer-key-file "$work/etcd.key" --peer-client-cert-auth --peer-trusted-ca-file "$work/ca.crt"
tpids=("${pids[@]: -3}")
eps=127.0.0.1:23010,127.0.0.1:23020,127.0.0.1:23030
teps=https://127.0.0.1:23110,https://127.0.0.1:23120,https://127.0.0.1:23130
tlsflags=(-cacert "$work/ca.crt" -cert "$work/etcd.crt" -key "$work/etcd.key")

# hpt: 3 server processes from one cluster keystore.
eval "$("$work/hpt" init --out "$work/keys" 2>/dev/null)"
for i in 1 2 3; do
	p=$((24000 + i * 10))
	env ${HPT_GOGC:+GOGC=$HPT_GOGC} "$work/hpt" server --name n$i --keystore "$work/keys/cluster.keystore.db" --data-dir "$work/n$i" \
		--listen 127.0.0.1:$p --gossip 127.0.0.1:$((p + 1)) --join 127.0.0.1:24011 \
		--bootstrap-expect 3 --log-level warn >"$work/n$i.log" 2>&1 &
	pids+=($!)
done
hpids=("${pids[@]: -3}")
export HPT_ADDR=127.0.0.1:24010,127.0.0.1:24020,127.0.0.1:24030

# cpu_seconds PID...: CPU time (user and system) the processes have used.
hz=$(getconf CLK_TCK)
cpu_seconds() {
	local ticks=0 p
	for p; do ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
	awk -v t="$ticks" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}'
}
# load VAR PID... -- COMMAND...: runs a load generator and stores its
# one-line JSON result in VAR with server_cpu_s added: the CPU the given
# servers used meanwhile.
load() {
	local var=$1 before after out
	shift
	local -a servers=()
	while [ "$1" != -- ]; do
		servers+=("$1")
		shift
	done
	shift
	before=$(cpu_seconds "${servers[@]}")
	out=$("$@" | tr -d ' \n')
	after=$(cpu_seconds "${servers[@]}")
	printf -v "$var" '%s,"server_cpu_s":%s}' "${out%\}}" "$(awk -v a="$after" -v b="$before" 'BEGIN {printf "%.2f", a - b}')"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores; count=$count size=256"
for c in "${clients[@]}"; do
	load e "${epids[@]}" -- "$work/etcdload" -endpoints $eps -clients "$c" -count "$count" -size 256
	load t "${tpids[@]}" -- "$work/etcdload" -endpoints $teps "${tlsflags[@]}" -clients "$c" -count "$count" -size 256
	load h "${hpids[@]}" -- "$work/hpt" bench write --clients "$c" --count "$count" --size 256 -o json
	echo "etcd     $e"
	echo "etcd-tls $t"
	echo "hpt      $h"
	python3 - "$e" "$t" "$h" <<'PY'
import json, sys
e, t, h = (json.loads(a) for a in sys.argv[1:4])
print(f"clients={h['clients']}: hpt {h['rate']:.0f}/s p99 {h['p99_ms']:.1f} ms"
      f" | etcd {e['rate']:.0f}/s p99 {e['p99_ms']:.1f} ms: ratio {h['rate']/e['rate']:.2f}x, p99 {h['p99_ms']/e['p99_ms']:.2f}x"
      f" | etcd+TLS {t['rate']:.0f}/s p99 {t['p99_ms']:.1f} ms: ratio {h['rate']/t['rate']:.2f}x, p99 {h['p99_ms']/t['p99_ms']:.2f}x")
def cpu(r):  # µs of CPU per committed write: servers (all three) + client
    n = r['count'] - r['errors']
    return r['server_cpu_s'] / n * 1e6, r.get('client_cpu_s', 0) / n * 1e6
(hs, hc), (es, ec), (ts, tc) = cpu(h), cpu(e), cpu(t)
print(f"  CPU per write: hpt servers {hs:.0f} µs + client {hc:.0f} µs"
      f" | etcd {es:.0f} + {ec:.0f} µs: servers {hs/es:.2f}x"
      f" | etcd+TLS {ts:.0f} + {tc:.0f} µs: servers {hs/ts:.2f}x")
PY
done
