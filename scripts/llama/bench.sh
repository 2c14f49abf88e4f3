#!/usr/bin/env bash
# The Llama blocks' training throughput (dense, MoE, MLA), side by side with the project's
# PyTorch reference of the same block (bench.py) on this machine,
# alternating N times (default 3), at the anchor benchmark's shape (d128,
# 4 layers, 4 heads, ctx 64, batch 12, vocab 256, SwiGLU width 344).
# PyTorch runs on OpenBLAS with this CPU's own kernels and its own thread
# choice (see ../shared/anchors/torch_lm_bench.py). Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-3}
go test -c -o /tmp/llama.test ./llama
# The three blocks of llama.BenchmarkTrainStep: dense, a mixture of experts
# (8 routed, top 2, 1 shared, each 112 wide), latent attention (latent 34,
# rotary 16, positionless 16, values 32).
declare -A flags=([dense]="" [moe]="--experts 8 --topk 2 --shared 1 --expert-hidden 112" [mla]="--kv-lora 34 --rope 16 --nope 16 --v-dim 32")
for i in $(seq "$n"); do
	for v in dense moe mla; do
		/tmp/llama.test -test.run XXX -test.bench "TrainStep/$v" -test.benchtime 40x | awk -v v="$v" '/tokens\/s/ {print "cairn " v ": " $(NF-1) " tokens/s"}'
		# shellcheck disable=SC2086
		env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 scripts/llama/bench.py --steps 40 ${flags[$v]} | sed "s/^/$v: /"
	done
done
