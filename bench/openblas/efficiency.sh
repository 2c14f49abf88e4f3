#!/usr/bin/env bash
# The d384 efficiency target: Cairn's training rate (GFLOP/s by the
# anchor's formula, `cairn bench` with the anchor's d384 flags) as a share
# of OpenBLAS's SGEMM 1024³ rate on 2 threads, the two alternated ROUNDS
# times so that each pair sees the machine in the same state; prints each
# pair, then the medians and the median of the per-pair ratios.
# Usage: bench/openblas/efficiency.sh [ROUNDS] [cairn bench flags...]
#   (apt-get install -y libopenblas-dev gcc)
# OpenBLAS runs with this CPU's own kernel (OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE unset); its line names the kernel it chose.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
shift || true
flags=("$@")
if ((${#flags[@]} == 0)); then
	flags=(--d 384 --layers 6 --heads 6 --ctx 256 --batch 8)
fi
gcc -O2 -o /tmp/cairn-openblas-sgemm bench/openblas/sgemm.c -lopenblas
go build -o /tmp/cairn-bench ./cmd/cairn
source bench/median.sh
: >/tmp/eff-cairn; : >/tmp/eff-openblas; : >/tmp/eff-ratio
for i in $(seq "$rounds"); do
	c=$(/tmp/cairn-bench bench --text ../shared/data/tinyshakespeare.txt "${flags[@]}" 2>/dev/null | tail -1 | sed 's/.*GFLOP\/s=\([0-9.]*\).*/\1/')
	line=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 /tmp/cairn-openblas-sgemm 1024 20)
	o=$(echo "$line" | sed 's/.*: \([0-9.]*\) GFLOP.*/\1/')
	r=$(awk -v c="$c" -v o="$o" 'BEGIN {printf "%.3f", c/o}')
	echo "round $i: cairn training $c GFLOP/s, $line: $(awk -v r="$r" 'BEGIN {printf "%.1f%%", 100*r}')"
	echo "$c" >>/tmp/eff-cairn; echo "$o" >>/tmp/eff-openblas; echo "$r" >>/tmp/eff-ratio
done
echo "median GFLOP/s: cairn training $(median </tmp/eff-cairn), openblas sgemm $(median </tmp/eff-openblas); median ratio $(median </tmp/eff-ratio | awk '{printf "%.1f%%", 100*$1}')"
