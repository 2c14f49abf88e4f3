#!/usr/bin/env bash
# Runs the numeric packages' tests for linux/arm64 (the portable Go paths,
# where Go fuses multiply-adds) under user-mode emulation.
# Needs: apt-get install -y qemu-user-static
set -euo pipefail
cd "$(dirname "$0")/.."
for p in kernels vecmath gpt optim parity train diloco compress safetensors; do
	GOARCH=arm64 CGO_ENABLED=0 go test -c -o "/tmp/cairn-arm64-$p.test" "./$p"
	(cd "$p" && qemu-aarch64-static "/tmp/cairn-arm64-$p.test" -test.short | tail -1 | sed "s|^|$p: |")
done
