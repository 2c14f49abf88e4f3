#!/usr/bin/env bash
# Side-by-side throughput: `cairn bench` against the PyTorch anchor
# (shared/anchors/torch_lm_bench.py) with the same flags, alternating ROUNDS
# times on this machine, then the median tokens/s of each and their ratio,
# and each one's peak resident memory.
# Usage: bench/compare.sh ROUNDS [anchor flags...]
#   e.g. bench/compare.sh 3 --d 384 --layers 6 --heads 6 --ctx 256 --batch 8
# CAIRN_FLAGS adds flags for Cairn only, e.g. CAIRN_FLAGS="--kernel amx-bf16".
# Needs Debian's PyTorch on OpenBLAS: apt-get install -y python3-torch libopenblas0-pthread
# The anchor runs as its note asks: OpenBLAS picks this CPU's own kernel
# (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset) and --threads stays unset,
# so PyTorch uses every core. The kernel OpenBLAS chose is printed first.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
anchor=../shared/anchors/torch_lm_bench.py
text=../shared/data/tinyshakespeare.txt
go build -o /tmp/cairn-bench ./cmd/cairn
py="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3"
$py -c "import torch, ctypes; l = ctypes.CDLL('libopenblas.so.0'); l.openblas_get_config.restype = ctypes.c_char_p; print('anchor: torch', torch.__version__, 'on', l.openblas_get_config().decode())"
source bench/median.sh
: >/tmp/cmp-cairn; : >/tmp/cmp-torch; : >/tmp/cmp-cairn-rss; : >/tmp/cmp-torch-rss
for i in $(seq "$rounds"); do
	/usr/bin/time -f '%M' -o /tmp/cmp-rss /tmp/cairn-bench bench --text "$text" ${CAIRN_FLAGS:-} "$@" 2>/dev/null | tail -1 | tee -a /tmp/cmp-cairn.log | sed 's/.*tokens\/s=\([0-9]*\).*/\1/' >>/tmp/cmp-cairn
	cat /tmp/cmp-rss >>/tmp/cmp-cairn-rss
	/usr/bin/time -f '%M' -o /tmp/cmp-rss $py "$anchor" --text "$text" "$@" | tail -1 | tee -a /tmp/cmp-torch.log | sed 's/.*tokens\/s=\([0-9]*\).*/\1/' >>/tmp/cmp-torch
	cat /tmp/cmp-rss >>/tmp/cmp-torch-rss
	echo "round $i: cairn $(tail -1 /tmp/cmp-cairn) tokens/s, torch $(tail -1 /tmp/cmp-torch) tokens/s"
done
c=$(median </tmp/cmp-cairn); t=$(median </tmp/cmp-torch)
cr=$(median </tmp/cmp-cairn-rss); tr=$(median </tmp/cmp-torch-rss)
echo "median tokens/s: cairn $c, torch $t, ratio $(awk -v c="$c" -v t="$t" 'BEGIN {printf "%.2f", c/t}')x"
echo "median peak RSS: cairn $((cr / 1024)) MiB, torch $((tr / 1024)) MiB"
