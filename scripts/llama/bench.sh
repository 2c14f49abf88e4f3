#!/usr/bin/env bash
# The Llama block's training throughput, side by side with the project's
# PyTorch reference of the same block (bench.py) on this machine,
# alternating N times (default 3), at the anchor benchmark's shape (d128,
# 4 layers, 4 heads, ctx 64, batch 12, vocab 256, SwiGLU width 344).
# PyTorch runs on OpenBLAS with this CPU's own kernels and its own thread
# choice (see ../shared/anchors/torch_lm_bench.py). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-3}
go test -c -o /tmp/llama.test ./llama
for i in $(seq "$n"); do
	/tmp/llama.test -test.run XXX -test.bench TrainStep -test.benchtime 40x | awk '/tokens\/s/ {print "cairn: " $(NF-1) " tokens/s"}'
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 scripts/llama/bench.py --steps 40
done
