"""Golden fixture for the Llama block (package llama), computed with PyTorch.

The reference is written here, following Hugging Face's LlamaForCausalLM
(transformers' modeling_llama): RMSNorm (weight * x / sqrt(mean(x^2) + eps)),
rotary position embeddings with rotate_half over the two halves of each head,
grouped-query attention (query head h reads key/value head h // (heads/kv_heads)),
a SwiGLU MLP (down(silu(gate(x)) * up(x))), no biases, optionally tied
embeddings. Tensor names and [out, in] layouts are Hugging Face's
(model.layers.N.self_attn.q_proj.weight, ...).

Writes OUT/model.safetensors (weights; the config as __metadata__.config, in
config.json's keys) and OUT/case.safetensors (input_ids, targets, logits,
loss, grad.<name>, adamw_step1.<name>, greedy_after_step1), as
../shared/fixtures/README.md describes for the GPT.

Usage: python3 make_fixture.py OUT --d 24 --layers 2 --heads 6 --kv-heads 2 --hidden 40 --vocab 67 --ctx 7 --batch 2 --seed 3 [--tied]
(Debian's python3-torch: run it as /usr/bin/python3.)"""
import argparse, json, math, os, struct
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument('out')
for k, v in [('d', 24), ('layers', 2), ('heads', 6), ('kv-heads', 2), ('hidden', 40), ('vocab', 67), ('ctx', 7), ('batch', 2), ('seed', 3)]:
    p.add_argument('--' + k, type=int, default=v)
p.add_argument('--eps', type=float, default=1e-5)
p.add_argument('--theta', type=float, default=10000.0)
p.add_argument('--tied', action='store_true')
a = p.parse_args()
torch.manual_seed(a.seed)
hd = a.d // a.heads
assert a.d % a.heads == 0 and a.heads % a.kv_heads == 0 and hd % 2 == 0

class RMSNorm(nn.Module):
    def __init__(s):
        super().__init__(); s.weight = nn.Parameter(torch.ones(a.d))
    def forward(s, x):
        return s.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + a.eps))

def rope(T):
    inv = 1.0 / (a.theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    f = torch.arange(T).float()[:, None] * inv[None, :]
    emb = torch.cat([f, f], -1)
    return emb.cos(), emb.sin()

def rotate_half(x):
    return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)

class Layer(nn.Module):
    def __init__(s):
        super().__init__()
        s.input_layernorm = RMSNorm(); s.post_attention_layernorm = RMSNorm()
        s.self_attn = nn.Module()
        s.self_attn.q_proj = nn.Linear(a.d, a.heads * hd, bias=False)
        s.self_attn.k_proj = nn.Linear(a.d, a.kv_heads * hd, bias=False)
        s.self_attn.v_proj = nn.Linear(a.d, a.kv_heads * hd, bias=False)
        s.self_attn.o_proj = nn.Linear(a.heads * hd, a.d, bias=False)
        s.mlp = nn.Module()
        s.mlp.gate_proj = nn.Linear(a.d, a.hidden, bias=False)
        s.mlp.up_proj = nn.Linear(a.d, a.hidden, bias=False)
        s.mlp.down_proj = nn.Linear(a.hidden, a.d, bias=False)
    def forward(s, x):
        B, T, _ = x.shape
        h = s.input_layernorm(x)
        q = s.self_attn.q_proj(h).view(B, T, a.heads, hd).transpose(1, 2)
        k = s.self_attn.k_proj(h).view(B, T, a.kv_heads, hd).transpose(1, 2)
        v = s.self_attn.v_proj(h).view(B, T, a.kv_heads, hd).transpose(1, 2)
        cos, sin = rope(T)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        rep = a.heads // a.kv_heads
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float('-inf')).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, a.heads * hd)
        x = x + s.self_attn.o_proj(y)
        h = s.post_attention_layernorm(x)
        return x + s.mlp.down_proj(F.silu(s.mlp.gate_proj(h)) * s.mlp.up_proj(h))

class Llama(nn.Module):
    def __init__(s):
        super().__init__()
        s.model = nn.Module()
        s.model.embed_tokens = nn.Embedding(a.vocab, a.d)
        s.model.layers = nn.ModuleList([Layer() for _ in range(a.layers)])
        s.model.norm = RMSNorm()
        if not a.tied:
            s.lm_head = nn.Linear(a.d, a.vocab, bias=False)
    def forward(s, idx):
        x = s.model.embed_tokens(idx)
        for l in s.model.layers: x = l(x)
        x = s.model.norm(x)
        return x @ s.model.embed_tokens.weight.t() if a.tied else s.lm_head(x)

m = Llama()
with torch.no_grad():
    for n_, p_ in m.named_parameters():
        if 'norm' in n_: p_.add_(0.1 * torch.randn_like(p_))  # a wrong norm weight shows up
        elif 'embed' in n_: p_.mul_(0.5)

x = torch.randint(a.vocab, (a.batch, a.ctx)); y = torch.randint(a.vocab, (a.batch, a.ctx))

def save(path, tensors, meta):
    header, blobs, off = {}, [], 0
    for k, t in tensors.items():
        t = t.detach().contiguous()
        dt = {torch.float32: 'F32', torch.int32: 'I32'}[t.dtype]
        b = t.numpy().tobytes()
        header[k] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b); off += len(b)
    header['__metadata__'] = meta
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)

os.makedirs(a.out, exist_ok=True)
config = {'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'vocab_size': a.vocab, 'hidden_size': a.d,
          'intermediate_size': a.hidden, 'num_hidden_layers': a.layers, 'num_attention_heads': a.heads,
          'num_key_value_heads': a.kv_heads, 'rms_norm_eps': a.eps, 'rope_theta': a.theta,
          'max_position_embeddings': a.ctx, 'tie_word_embeddings': a.tied, 'hidden_act': 'silu'}
params = dict(m.named_parameters())
save(os.path.join(a.out, 'model.safetensors'), params, {'config': json.dumps(config), 'format': 'pt'})
with open(os.path.join(a.out, 'config.json'), 'w') as f: json.dump(config, f, indent=1)

logits = m(x)
loss = F.cross_entropy(logits.view(-1, a.vocab), y.view(-1))
loss.backward()
case = {'input_ids': x.to(torch.int32), 'targets': y.to(torch.int32), 'logits': logits, 'loss': loss.reshape(1)}
for n_, p_ in params.items(): case['grad.' + n_] = p_.grad.clone()
hp = {'lr': 1e-3, 'beta1': 0.9, 'beta2': 0.95, 'eps': 1e-8, 'weight_decay': 0.1}
opt = torch.optim.AdamW(m.parameters(), lr=hp['lr'], betas=(hp['beta1'], hp['beta2']), eps=hp['eps'], weight_decay=hp['weight_decay'])
opt.step()
for n_, p_ in params.items(): case['adamw_step1.' + n_] = p_.detach().clone()
with torch.no_grad():
    seq = x[:1, :3].clone()
    for _ in range(a.ctx - 3):
        nxt = m(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
case['greedy_after_step1'] = seq[0].to(torch.int32)
save(os.path.join(a.out, 'case.safetensors'), case, {'adamw': json.dumps(hp), 'torch': torch.__version__,
     'note': 'loss is mean cross-entropy over all B*T positions; grads are d(loss)/d(param); adamw_step1 is params after one torch.optim.AdamW step (every tensor decayed); greedy_after_step1: the first row\'s first 3 tokens and greedy tokens up to the context'})
print('wrote', a.out, 'loss', loss.item(), 'params', sum(p_.numel() for p_ in params.values()))
