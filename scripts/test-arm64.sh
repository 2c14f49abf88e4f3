#!/usr/bin/env bash
# Runs the numeric packages' tests for linux/arm64 (the NEON matrix
# products, and the portable Go paths, where Go fuses multiply-adds) under
# user-mode emulation. Every package runs even when one fails; the exit
# status says whether all passed.
# Needs: apt-get install -y qemu-user-static
set -euo pipefail
cd "$(dirname "$0")/.."
failed=()
for p in kernels vecmath attention gpt llama optim parity train diloco compress safetensors; do
	GOARCH=arm64 CGO_ENABLED=0 go test -c -o "/tmp/cairn-arm64-$p.test" "./$p"
	if out=$(cd "$p" && qemu-aarch64-static "/tmp/cairn-arm64-$p.test" -test.short 2>&1); then
		echo "$p: PASS"
	else
		echo "$out" | tail -20 | sed "s|^|$p: |"
		failed+=("$p")
	fi
done
if ((${#failed[@]})); then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
