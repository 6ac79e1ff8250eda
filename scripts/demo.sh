#!/usr/bin/env bash
# The Docker Swarm tutorial, replayed on a local three-node Flotilla cluster.
#
#   bash scripts/demo.sh                 # process runtime (no Docker needed)
#   RUNTIME=docker bash scripts/demo.sh  # Docker runtime with the local busybox image
#
# Starts one manager and two workers on 127.0.0.1/2/3, walks through the tutorial, and leaves
# nothing running behind it, even when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME="${RUNTIME:-process}"
PORT="${PORT:-4250}"
case "$RUNTIME" in
    process|docker) ;;
    *) echo "RUNTIME must be process or docker, not $RUNTIME" >&2; exit 2 ;;
esac

echo "==> building (release)"
cargo build --release --bins --quiet
BIN="$PWD/target/release"
if [ "$RUNTIME" = docker ]; then
    scripts/make-busybox-image.sh
fi

WORK="$(mktemp -d -t flotilla-demo.XXXXXX)"
PIDS=()

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    # Task processes a killed node left behind (the process runtime records them).
    for record in "$WORK"/node*/processes/*.json; do
        [ -f "$record" ] || continue
        pid="$(grep -o '"pid": *[0-9]*' "$record" | grep -o '[0-9]*$')"
        [ -n "$pid" ] && kill -KILL "-$pid" 2>/dev/null
    done
    if [ "$RUNTIME" = docker ]; then
        for dir in "$WORK"/node*; do
            [ -f "$dir/node.toml" ] || continue
            id="$(sed -n 's/^node_id = "\(.*\)"/\1/p' "$dir/node.toml")"
            ids="$(docker ps -aq --filter "label=com.flotilla.node.id=$id")"
            [ -n "$ids" ] && docker rm -f $ids >/dev/null
        done
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

flotilla() { "$BIN/flotilla" --config "$WORK/node1/client.toml" "$@"; }
show() {
    echo
    echo "\$ flotilla $*"
    flotilla "$@"
}
start_node() { # index, then flotilla-node arguments
    local index="$1"; shift
    "$BIN/flotilla-node" "$@" --listen "127.0.0.$index:$PORT" --state-dir "$WORK/node$index" \
        --hostname "node$index" --runtime "$RUNTIME" >"$WORK/node$index.log" 2>&1 &
    PIDS+=("$!")
}
wait_for() { # description, then a command that must succeed
    local what="$1"; shift
    for _ in $(seq 1 100); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    echo "timed out waiting for $what; logs in $WORK" >&2
    tail -n 20 "$WORK"/node*.log >&2
    exit 1
}
ready_nodes() { [ "$(flotilla node ls | grep -c ' Ready ')" -ge "$1" ]; }

echo "==> starting a manager on 127.0.0.1:$PORT and two workers on 127.0.0.2 and 127.0.0.3"
start_node 1 init
wait_for "the manager" test -f "$WORK/node1/client.toml"
wait_for "the manager" flotilla node ls
TOKEN="$(flotilla swarm join-token -q worker)"
start_node 2 join --token "$TOKEN" "127.0.0.1:$PORT"
start_node 3 join --token "$TOKEN" "127.0.0.1:$PORT"
wait_for "three ready nodes" ready_nodes 3

show node ls
show service create --name demo busybox sh -c "while true; do sleep 3600; done"
show service ls
show service ps demo
show service scale demo=5
show service ps demo

echo
if [ "$RUNTIME" = docker ]; then
    victim="$(docker ps -q --filter label=com.flotilla.service.name=demo | head -n 1)"
    echo "\$ docker rm -f $victim      # kill one replica from outside"
    docker rm -f "$victim" >/dev/null
else
    record="$(ls "$WORK"/node*/processes/*.json | head -n 1)"
    victim="$(grep -o '"pid": *[0-9]*' "$record" | grep -o '[0-9]*$')"
    echo "\$ kill -9 $victim      # kill one replica's process from outside"
    kill -9 "$victim"
fi
echo "REPLICAS over the next moments (polled as fast as the CLI answers):"
last=""
for _ in $(seq 1 100); do
    now="$(flotilla service ls | awk '$2 == "demo" {print $4}')"
    if [ "$now" != "$last" ]; then echo "  $(date +%T.%3N)  demo  $now"; last="$now"; fi
    if [ "$now" = "5/5" ] && flotilla service ps demo | grep -q 'Failed'; then break; fi
    sleep 0.05
done
show service ps demo

echo
echo "\$ flotilla --host 127.0.0.2:$PORT service rm demo      # on a worker"
flotilla --host "127.0.0.2:$PORT" service rm demo || true
show service rm demo
wait_for "the replicas to stop" bash -c "! \"$BIN/flotilla\" --config \"$WORK/node1/client.toml\" service ls | grep -q demo"
show service ls
echo
echo "==> done; stopping the cluster"
