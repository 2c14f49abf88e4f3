#!/usr/bin/env bash
# Side-by-side SGEMM measurement: OpenBLAS (Debian's libopenblas-dev) against
# Cairn's kernel, 1024³ float32 on 2 threads, alternating ROUNDS times.
# Usage: bench/openblas/compare.sh [ROUNDS]   (apt-get install -y libopenblas-dev gcc)
# OpenBLAS runs with this CPU's own kernel (OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE unset); each line names the kernel it chose.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
gcc -O2 -o /tmp/cairn-openblas-sgemm bench/openblas/sgemm.c -lopenblas
go test -c -o /tmp/cairn-kernels.test ./kernels
source bench/median.sh
: >/tmp/cmp-openblas; : >/tmp/cmp-cairn-sgemm
for i in $(seq "$rounds"); do
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=2 /tmp/cairn-openblas-sgemm 1024 20 | tee /dev/stderr | sed 's/.*: \([0-9.]*\) GFLOP.*/\1/' >>/tmp/cmp-openblas
	/tmp/cairn-kernels.test -test.run='^$' -test.bench='Sgemm1024/avx512' -test.benchtime=20x | grep GFLOP | tee /dev/stderr | awk '{print $(NF-1)}' >>/tmp/cmp-cairn-sgemm
done
o=$(median </tmp/cmp-openblas); c=$(median </tmp/cmp-cairn-sgemm)
echo "median GFLOP/s: cairn $c, openblas $o, ratio $(awk -v c="$c" -v o="$o" 'BEGIN {printf "%.0f%%", 100*c/o}')"
