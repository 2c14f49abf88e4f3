#!/usr/bin/env bash
# Measures what the live view costs an aggregator: the same run (cairn
# node aggregate with 3 cairn node work processes on loopback) once with
# nobody watching and once with a watcher that does what the page does
# (server-sent events open, the summary and the new rounds fetched at
# each round), each REPS times, and prints the aggregator's CPU seconds
# (utime+stime from /proc) for each run. Usage: scripts/view-cost.sh [REPS].
# By hand; not in CI.
set -euo pipefail
REPS=${1:-3}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/cairn" ./cmd/cairn
bin=$dir/cairn
tick=$(getconf CLK_TCK)
run() { # $1: watch or idle, $2: rep
	local d="$dir/$1$2" id join pid n=0
	id=$("$bin" node id --data-dir "$d/agg")
	"$bin" node aggregate --data-dir "$d/agg" --listen /ip4/127.0.0.1/tcp/43$((RANDOM % 900 + 100)) --min-stake 0 --rounds 60 \
		--inner-steps 50 --quorum 3 --d 64 --layers 2 --heads 4 --ctx 64 --eval-batches 4 --threads 1 --http 127.0.0.1:0 >"$d.out" 2>"$d.err" &
	pid=$!
	for _ in $(seq 1 100); do grep -q "node work --join" "$d.out" 2>/dev/null && break; sleep 0.1; done
	join=$(grep -o '/ip4/127.0.0.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' "$d.out" | head -1)
	view=$(grep -o 'http://127.0.0.1:[0-9]*/' "$d.out" | head -1)
	for i in 0 1 2; do "$bin" node work --join "$join" --data-dir "$d/w$i" --threads 1 >/dev/null 2>&1 & done
	if [ "$1" = watch ]; then
		# As the page: the whole history once, then at each round event
		# (at most once a second) the summary and the rounds not yet seen.
		( n=$(curl -s "${view}api/rounds?from=1" | grep -o '"round":' | wc -l || true)
		  last=0
		  curl -sN "${view}api/events" 2>/dev/null | while read -r line; do
			case "$line" in data:*) ;; *) continue ;; esac
			now=$(date +%s)
			[ "$now" -gt "$last" ] || continue
			last=$now
			curl -s "${view}api/run" >/dev/null || true
			got=$(curl -s "${view}api/rounds?from=$((n + 1))" | grep -o '"round":' | wc -l || true)
			n=$((n + got))
		  done ) &
	fi
	local cpu=0
	while kill -0 "$pid" 2>/dev/null; do
		cpu=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null || echo "$cpu")
		sleep 0.2
	done
	echo "$1 run $2: aggregator CPU $(echo "scale=2; $cpu / $tick" | bc) s"
}
for r in $(seq 1 "$REPS"); do run idle "$r"; run watch "$r"; done | tee "$dir/runs.txt"
for kind in idle watch; do
	printf '%s median: ' "$kind"
	grep "^$kind" "$dir/runs.txt" | awk '{print $(NF-1)}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] " s"}'
done
