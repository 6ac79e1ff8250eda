#!/usr/bin/env bash
# Docker Swarm vs Flotilla (--runtime docker) on the same Docker Engine, alternating runs.
#
#   scripts/bench-vs-swarm.sh [RUNS] [N...]        # default: 3 runs each, N = 10 50
#
# Each run: create a service of N busybox `sleep 1000000` replicas and time until the
# orchestrator reports N/N running (`docker service ls` / `flotilla service ls`), then
# `docker rm -f` one task container and time until the engine runs N task containers again
# (none of them the removed one), then a rolling update of every replica (start-first,
# parallelism 1, adding a health check `true` every 1 s and an env var) timed until the
# orchestrator reports the update completed (its monitor period, 5 s on both, included). Swarm: single-node `docker swarm init` (left after every run,
# so Flotilla's runs see a plain engine). Flotilla: one `flotilla-node init --runtime docker` on
# 127.0.0.1. Prints one JSON line per run, then the median ratios Swarm/Flotilla.
# Binaries: $FLOTILLA_BIN_DIR, else ${CARGO_TARGET_DIR:-target}/release.
# Cleanup (EXIT/INT/TERM): kills the node, removes every container it labelled, removes the
# Swarm service, leaves swarm mode if this script entered it, removes the temp dir.
set -euo pipefail

RUNS="${1:-3}"
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(10 50)

repo="$(cd "$(dirname "$0")/.." && pwd)"
bin_dir="${FLOTILLA_BIN_DIR:-${CARGO_TARGET_DIR:-$repo/target}/release}"
node_bin="$bin_dir/flotilla-node"
cli_bin="$bin_dir/flotilla"
for bin in "$node_bin" "$cli_bin"; do
    [ -x "$bin" ] || { echo "missing $bin (cargo build --release --bins)" >&2; exit 1; }
done
docker version >/dev/null 2>&1 || { echo "docker does not answer" >&2; exit 1; }
"$repo/scripts/make-busybox-image.sh" >/dev/null

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != "inactive" ]; then
    echo "this engine is already in swarm mode; refusing to touch it" >&2
    exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/flotilla-vs-swarm.XXXXXX")"
node_pid=""
node_id=""
swarm_on=0
results="$work/results.jsonl"

cleanup() {
    set +e
    if [ -n "$node_pid" ]; then
        kill -KILL "$node_pid" 2>/dev/null
        wait "$node_pid" 2>/dev/null
        node_pid=""
    fi
    if [ -n "$node_id" ]; then
        ids="$(docker ps -aq --filter "label=com.flotilla.node.id=$node_id")"
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
        node_id=""
    fi
    if [ "$swarm_on" = 1 ]; then
        docker service rm benchswarm >/dev/null 2>&1
        docker swarm leave --force >/dev/null 2>&1
        swarm_on=0
        ids="$(docker ps -aq --filter "label=com.docker.swarm.service.name=benchswarm")"
        [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1
    fi
}
on_exit() {
    cleanup
    rm -rf "$work"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now_ms() { date +%s%3N; }

# Running task containers matching a label filter, one ID per line.
running_ids() { docker ps -q --no-trunc --filter "label=$1" --filter status=running; }

# Waits until the engine runs exactly N containers with label $1, none being $3. Echoes ms.
wait_replaced() {
    local label="$1" n="$2" killed="$3" start="$4" ids count
    while :; do
        ids="$(running_ids "$label")"
        count="$(printf '%s\n' "$ids" | grep -c . || true)"
        if [ "$count" -ge "$n" ] && ! printf '%s\n' "$ids" | grep -q "^$killed"; then
            echo $(( $(now_ms) - start ))
            return
        fi
        if [ $(( $(now_ms) - start )) -gt 120000 ]; then echo -1; return; fi
        sleep 0.05
    done
}

swarm_run() {
    local n="$1" start create_ms killed heal_ms update_ms
    if ! docker swarm init --advertise-addr 127.0.0.1 >/dev/null 2>&1; then
        docker swarm init >/dev/null
    fi
    swarm_on=1
    start="$(now_ms)"
    docker service create --no-resolve-image --detach --name benchswarm --replicas "$n" \
        busybox:latest sleep 1000000 >/dev/null
    while [ "$(docker service ls --filter name=benchswarm --format '{{.Replicas}}')" != "$n/$n" ]; do
        if [ $(( $(now_ms) - start )) -gt 300000 ]; then break; fi
        sleep 0.05
    done
    create_ms=$(( $(now_ms) - start ))
    killed="$(running_ids com.docker.swarm.service.name=benchswarm | head -n 1)"
    start="$(now_ms)"
    docker rm -f "$killed" >/dev/null
    heal_ms="$(wait_replaced com.docker.swarm.service.name=benchswarm "$n" "$killed" "$start")"
    start="$(now_ms)"
    docker service update --detach --no-resolve-image --update-order start-first \
        --health-cmd true --health-interval 1s --env-add V=2 benchswarm >/dev/null
    while [ "$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' benchswarm)" != "completed" ]; do
        if [ $(( $(now_ms) - start )) -gt 600000 ]; then break; fi
        sleep 0.1
    done
    update_ms=$(( $(now_ms) - start ))
    cleanup
    echo "{\"system\":\"swarm\",\"n\":$n,\"create_to_converged_ms\":$create_ms,\"rm_to_replacement_running_ms\":$heal_ms,\"update_ms\":$update_ms}" | tee -a "$results"
}

flotilla_run() {
    local n="$1" dir port start create_ms killed heal_ms update_ms
    dir="$(mktemp -d "$work/node.XXXXXX")"
    port="$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    "$node_bin" init --listen "127.0.0.1:$port" --state-dir "$dir/state" --hostname bench \
        --runtime docker >"$dir/node.log" 2>&1 &
    node_pid=$!
    local cli=("$cli_bin" --config "$dir/state/client.toml" --host "127.0.0.1:$port")
    for _ in $(seq 1 300); do
        [ -f "$dir/state/client.toml" ] && "${cli[@]}" node ls >/dev/null 2>&1 && break
        sleep 0.1
    done
    node_id="$(sed -n 's/^node_id *= *"\(.*\)"/\1/p' "$dir/state/node.toml")"
    start="$(now_ms)"
    "${cli[@]}" service create -d --name benchflotilla --replicas "$n" \
        busybox:latest sleep 1000000 >/dev/null
    while [ "$("${cli[@]}" service ls --format json | jq '.[0].replicas_running')" != "$n" ]; do
        if [ $(( $(now_ms) - start )) -gt 300000 ]; then break; fi
        sleep 0.05
    done
    create_ms=$(( $(now_ms) - start ))
    killed="$(running_ids "com.flotilla.node.id=$node_id" | head -n 1)"
    start="$(now_ms)"
    docker rm -f "$killed" >/dev/null
    heal_ms="$(wait_replaced "com.flotilla.node.id=$node_id" "$n" "$killed" "$start")"
    start="$(now_ms)"
    "${cli[@]}" service update -d --update-order start-first \
        --health-cmd true --health-interval 1s --env-add V=2 benchflotilla >/dev/null
    while [ "$("${cli[@]}" service inspect benchflotilla | jq -r '.[0].update_status.state')" != "completed" ]; do
        if [ $(( $(now_ms) - start )) -gt 600000 ]; then break; fi
        sleep 0.1
    done
    update_ms=$(( $(now_ms) - start ))
    cleanup
    echo "{\"system\":\"flotilla\",\"n\":$n,\"create_to_converged_ms\":$create_ms,\"rm_to_replacement_running_ms\":$heal_ms,\"update_ms\":$update_ms}" | tee -a "$results"
}

for n in "${SIZES[@]}"; do
    for run in $(seq 1 "$RUNS"); do
        if [ $((run % 2)) -eq 1 ]; then swarm_run "$n"; flotilla_run "$n"; else flotilla_run "$n"; swarm_run "$n"; fi
    done
done

# Median per system, N and metric; ratio Swarm/Flotilla.
jq -s -c '
  def median: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
  group_by(.n) | map(. as $runs | {
    n: $runs[0].n,
    runs: ($runs | length),
    swarm_create_ms: ([$runs[] | select(.system=="swarm") | .create_to_converged_ms] | median),
    flotilla_create_ms: ([$runs[] | select(.system=="flotilla") | .create_to_converged_ms] | median),
    swarm_heal_ms: ([$runs[] | select(.system=="swarm") | .rm_to_replacement_running_ms] | median),
    flotilla_heal_ms: ([$runs[] | select(.system=="flotilla") | .rm_to_replacement_running_ms] | median),
    swarm_update_ms: ([$runs[] | select(.system=="swarm") | .update_ms] | median),
    flotilla_update_ms: ([$runs[] | select(.system=="flotilla") | .update_ms] | median)
  } | .create_ratio = ((.swarm_create_ms / .flotilla_create_ms * 100 | round) / 100)
    | .heal_ratio = ((.swarm_heal_ms / .flotilla_heal_ms * 100 | round) / 100)
    | .update_ratio = ((.swarm_update_ms / .flotilla_update_ms * 100 | round) / 100))[]' "$results"
