#!/usr/bin/env bash
# Runs the same DiLoCo run twice with N worker processes on loopback and the
# same identities: once without an aggregator (N `cairn node member`
# processes on a one-validator chain with member rounds) and once with
# one (`cairn node aggregate` and N `cairn node work`), and prints every
# round's weights hash from both (and the aggregator's validation loss).
# Usage: scripts/members-vs-aggregator.sh [N] [ROUNDS]. By hand; not in CI.
set -euo pipefail
N=${1:-8}
ROUNDS=${2:-5}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
go build -o "$dir/cairn" ./cmd/cairn
bin=$dir/cairn
run=(--d 64 --layers 2 --heads 4 --ctx 64 --batch 4 --inner-steps 20 --rounds "$ROUNDS" --quorum "$N" --round-timeout 5m --threads 1)
stakes=() ids=()
for i in $(seq 0 $((N-1))); do
	id=$("$bin" node id --data-dir "$dir/m$i")
	ids+=("$id")
	stakes+=(--stake "$id=100000000")
done

echo "== without an aggregator: $N member processes"
"$bin" chain init --validators 1 --out "$dir/chain" --base-port 46600 --commit-window 5m --empty-blocks 200ms \
	--timeout-commit 100ms "${stakes[@]}" >/dev/null
"$bin" chain start --home "$dir/chain/v0" >"$dir/validator.log" 2>&1 &
sleep 3
pids=()
start=$(date +%s.%N)
for i in $(seq 0 $((N-1))); do
	peers=()
	for j in $(seq 0 $((N-1))); do
		[ "$j" = "$i" ] || peers+=(--peer "/ip4/127.0.0.1/tcp/$((41000+j))/p2p/${ids[$j]}")
	done
	"$bin" node member --data-dir "$dir/m$i" --ledger 127.0.0.1:46601 --listen "/ip4/127.0.0.1/tcp/$((41000+i))" \
		"${peers[@]}" "${run[@]}" >"$dir/m$i.out" 2>"$dir/m$i.log" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "wall $(echo "$(date +%s.%N) - $start" | bc) s"
kill %1 2>/dev/null || true
for i in $(seq 0 $((N-1))); do grep -o 'round [0-9]*/[0-9]*: weights [0-9a-f]*' "$dir/m$i.out" | sed "s/^/member $i: /"; done >"$dir/members.txt"
echo "distinct final hashes among the members: $(grep "round $ROUNDS/$ROUNDS" "$dir/members.txt" | awk '{print $NF}' | sort -u | wc -l)"

echo "== with an aggregator: node aggregate + $N node work, the same identities"
"$bin" node aggregate --data-dir "$dir/agg" --listen /ip4/127.0.0.1/tcp/42000 "${stakes[@]}" "${run[@]}" >"$dir/agg.out" 2>"$dir/agg.log" &
agg=$!
sleep 2
join=$(grep -o '/ip4/127.0.0.1/tcp/42000/p2p/[A-Za-z0-9]*' "$dir/agg.out" | head -1)
start=$(date +%s.%N)
wpids=()
for i in $(seq 0 $((N-1))); do
	"$bin" node work --join "$join" --data-dir "$dir/m$i" --threads 1 >"$dir/w$i.out" 2>"$dir/w$i.log" &
	wpids+=($!)
done
wait "$agg" || true
echo "wall $(echo "$(date +%s.%N) - $start" | bc) s"
for p in "${wpids[@]}"; do kill "$p" 2>/dev/null || true; done

echo "== per round"
printf '%-6s %-66s %-9s %s\n' round "aggregator weights" val_loss "members agreeing"
for r in $(seq 0 $((ROUNDS-1))); do
	line=$(grep 'msg="round closed"' "$dir/agg.log" | grep " round=$r " | head -1)
	h=$(echo "$line" | grep -o 'weights=[0-9a-f]*' | cut -d= -f2)
	v=$(echo "$line" | grep -o 'val_loss=[0-9.]*' | cut -d= -f2)
	same=$(grep -c "round $((r+1))/$ROUNDS: weights $h" "$dir/members.txt" || true)
	printf '%-6s %-66s %-9s %s/%s\n' "$((r+1))" "$h" "$v" "$same" "$N"
done
