# Usage: /usr/bin/python3 scripts/torch_load_checkpoint.py out/model.safetensors "ROMEO:" 40
# Checks that a Cairn checkpoint loads into PyTorch (load_state_dict strict=True) and prints the
# greedy continuation, to compare with: cairn sample --ckpt out --prompt "ROMEO:" --tokens 40 --temperature 0
# Load a Cairn checkpoint into a PyTorch nanoGPT-style module (strict) and print logits for a prompt.
import json, struct, sys, math
import torch, torch.nn as nn, torch.nn.functional as F
path = sys.argv[1]
b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); data = b[8+n:]
cfg = json.loads(h['__metadata__']['config'])
sd = {}
for k, v in h.items():
    if k == '__metadata__': continue
    s, e = v['data_offsets']
    sd[k] = torch.frombuffer(bytearray(data[s:e]), dtype=torch.float32).reshape(v['shape'])
d, L, H, T = cfg['n_embd'], cfg['n_layer'], cfg['n_head'], cfg['block_size']
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.ln_1 = nn.LayerNorm(d); s.ln_2 = nn.LayerNorm(d)
        s.attn = nn.Module(); s.attn.c_attn = nn.Linear(d, 3*d); s.attn.c_proj = nn.Linear(d, d)
        s.mlp = nn.Module(); s.mlp.c_fc = nn.Linear(d, 4*d); s.mlp.c_proj = nn.Linear(4*d, d)
    def forward(s, x):
        B, T_, C = x.shape
        q, k, v = s.attn.c_attn(s.ln_1(x)).split(C, dim=2)
        sh = lambda t: t.view(B, T_, H, C // H).transpose(1, 2)
        q, k, v = sh(q), sh(k), sh(v)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // H)
        att = att.masked_fill(torch.triu(torch.ones(T_, T_, dtype=torch.bool), 1), float('-inf')).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T_, C)
        x = x + s.attn.c_proj(y)
        return x + s.mlp.c_proj(F.gelu(s.mlp.c_fc(s.ln_2(x))))
class GPT(nn.Module):
    def __init__(s):
        super().__init__(); s.transformer = nn.Module()
        s.transformer.wte = nn.Embedding(256, d); s.transformer.wpe = nn.Embedding(T, d)
        s.transformer.h = nn.ModuleList([Block() for _ in range(L)]); s.transformer.ln_f = nn.LayerNorm(d)
        s.lm_head = nn.Linear(d, 256)
    def forward(s, idx):
        x = s.transformer.wte(idx) + s.transformer.wpe(torch.arange(idx.shape[1]))
        for blk in s.transformer.h: x = blk(x)
        return s.lm_head(s.transformer.ln_f(x))
m = GPT(); m.load_state_dict(sd, strict=True)
prompt = sys.argv[2].encode()
seq = torch.tensor([list(prompt)])
with torch.no_grad():
    for _ in range(int(sys.argv[3])):
        nxt = m(seq[:, -T:])[:, -1].argmax(-1, keepdim=True); seq = torch.cat([seq, nxt], 1)
print(bytes(seq[0].tolist()).decode('latin1'))
