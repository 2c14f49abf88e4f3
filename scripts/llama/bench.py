"""Training throughput of the PyTorch reference Llama block (reference.py):
forward, backward and an AdamW step on random tokens, tokens per second,
median of --steps after --warmup. Run with Debian's PyTorch on OpenBLAS with
this CPU's own kernels, --threads unset (see ../../../shared/anchors/torch_lm_bench.py):
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench.py"""
import argparse, os, statistics, sys, time
import torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference

p = argparse.ArgumentParser()
for k, v in [('d', 128), ('layers', 4), ('heads', 4), ('kv-heads', 4), ('hidden', 344), ('vocab', 256), ('ctx', 64), ('batch', 12), ('steps', 30), ('warmup', 5),
             ('experts', 0), ('shared', 1), ('topk', 2), ('expert-hidden', 112),
             ('kv-lora', 0), ('nope', 16), ('rope', 16), ('v-dim', 32)]:
    p.add_argument('--' + k, type=int, default=v)
p.add_argument('--route-scale', type=float, default=1.0)
p.add_argument('--eps', type=float, default=1e-5)
p.add_argument('--theta', type=float, default=10000.0)
p.add_argument('--tied', action='store_true')
a = p.parse_args()
torch.manual_seed(1)
m = reference.build(a)
opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
x = torch.randint(a.vocab, (a.batch, a.ctx)); y = torch.randint(a.vocab, (a.batch, a.ctx))
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    loss = F.cross_entropy(m(x).view(-1, a.vocab), y.view(-1))
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    if i >= a.warmup: times.append(time.perf_counter() - t0)
tps = a.batch * a.ctx / statistics.median(times)
print(f'pytorch {torch.__version__} threads {torch.get_num_threads()}: {tps:.0f} tokens/s (median of {a.steps} steps)')
