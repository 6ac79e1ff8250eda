#!/usr/bin/env bash
# The metrics endpoint's cost (SPEC §11, docs/metrics.md) at W hollow workers / R tasks: one
# manager on 127.0.0.1 (drained), one `flotilla-node sim` process with W hollow workers,
# `service create --replicas R`; once converged, the leader's CPU idle for 10 s, then 20
# scrapes of http://127.0.0.1:9323/metrics. Prints one JSON line.
#   W=1000 R=30000 bash scripts/bench-metrics.sh
set -euo pipefail
cd "$(dirname "$0")/.."
W=${W:-1000}; R=${R:-30000}
cargo build --release --bins --quiet
B="$PWD/target/release"
D=$(mktemp -d /tmp/scrape.XXXX)
cleanup() { pkill -P $$ || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
PORT=4861
$B/flotilla-node init --listen 127.0.0.1:$PORT --state-dir $D/m --runtime sim > $D/m.log 2>&1 &
MPID=$!
F="$B/flotilla --config $D/m/client.toml"
for i in $(seq 1 100); do $F node ls >/dev/null 2>&1 && break; sleep 0.2; done
$F node update --availability drain $($F node ls --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])') >/dev/null
T=$($F swarm join-token -q worker)
$B/flotilla-node sim --token $T --workers $W --listen 127.0.0.2:31000 --state-dir $D/sim 127.0.0.1:$PORT > $D/sim.log 2>&1 &
for i in $(seq 1 600); do n=$($F node ls --format json | python3 -c 'import json,sys; print(sum(1 for n in json.load(sys.stdin) if n["status"]=="ready"))'); [ "$n" -ge $((W+1)) ] && break; sleep 1; done
echo "ready nodes: $n"
$F service create -d --name load --replicas $R busybox sleep 1000000 >/dev/null
start=$(date +%s.%N)
for i in $(seq 1 600); do r=$($F service ls --format json | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]; print(s["replicas_running"])'); [ "$r" -ge $R ] && break; sleep 1; done
echo "converged: $r running after $(python3 -c "print(round($(date +%s.%N)-$start,1))") s"
sleep 5
ticks() { awk '{print $14+$15}' /proc/$MPID/stat; }
HZ=$(getconf CLK_TCK)
t0=$(ticks); sleep 10; t1=$(ticks)
idle=$(python3 -c "print(($t1-$t0)/$HZ/10)")
t0=$(ticks); times=()
for i in $(seq 1 20); do times+=($(curl -s -o $D/scrape.txt -w '%{time_total}' http://127.0.0.1:9323/metrics)); done
t1=$(ticks)
bytes=$(wc -c < $D/scrape.txt)
python3 - "$idle" "$((t1-t0))" "$HZ" "$bytes" "${times[@]}" <<'PY'
import sys, json, statistics
idle=float(sys.argv[1]); ticks=int(sys.argv[2]); hz=int(sys.argv[3]); size=int(sys.argv[4]); t=[float(x) for x in sys.argv[5:]]
wall=sum(t)
print(json.dumps({"scrapes":len(t),"scrape_ms_p50":round(statistics.median(t)*1000,1),"scrape_ms_max":round(max(t)*1000,1),
 "leader_cpu_s_per_scrape":round((ticks/hz - idle*wall)/len(t),4),"leader_idle_cpu_s_per_s":round(idle,3),"body_bytes":size}))
PY
grep -c "^flotilla_" $D/scrape.txt | sed 's/^/metric lines: /'
