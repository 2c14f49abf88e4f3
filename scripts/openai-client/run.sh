#!/usr/bin/env bash
# Runs the official OpenAI client (npm "openai") against `cairn serve` on
# loopback: builds cairn, trains a tiny model, serves it, runs test.mjs.
# Needs Go, Node.js and npm (it installs the pinned client itself).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
go build -o "$work/cairn" "$root/cmd/cairn"
"$work/cairn" train --d 32 --layers 1 --heads 2 --ctx 32 --batch 4 --steps 20 --eval-batches 1 --out "$work/model" > /dev/null
key="sk-ci-$(date +%s)"
# The account the key charges: any ed25519 peer ID (serving here is free
# of charge: no --ledger).
acct=12D3KooWChuvUNpmhML4naddyuesd42TxtQp4LZmfrRyA3PFGVoD
printf '{"%s": "%s"}\n' "$key" "$acct" > "$work/keys.json"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18181)
view=$((port + 1))
"$work/cairn" serve --ckpt "$work/model" --keys "$work/keys.json" --data-dir "$work/serve" --addr "127.0.0.1:$port" --view "127.0.0.1:$view" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  grep -q "serving" "$work/serve.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
CAIRN_URL="http://127.0.0.1:$port/v1" CAIRN_KEY="$key" node "$here/test.mjs"
# The live view counts what was served: one receipt per answered request.
node -e '
fetch(process.argv[1]).then((r) => r.json()).then((j) => {
  const s = j.serving;
  if (!s || s.requests < 1 || s.completion_tokens < 1) { console.error("live view: no serving in", JSON.stringify(j)); process.exit(1); }
  console.log(`live view: ${s.requests} requests, ${s.prompt_tokens}+${s.completion_tokens} tokens, fees ${s.fees}`);
}).catch((e) => { console.error("live view:", e.message); process.exit(1); });
' "http://127.0.0.1:$view/api/run"
