"""Golden fixture for the Llama block (package llama), computed with PyTorch.

The reference (reference.py) follows Hugging Face's LlamaForCausalLM
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
import argparse, json, os, struct, sys
import torch, torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference

p = argparse.ArgumentParser()
p.add_argument('out')
for k, v in [('d', 24), ('layers', 2), ('heads', 6), ('kv-heads', 2), ('hidden', 40), ('vocab', 67), ('ctx', 7), ('batch', 2), ('seed', 3),
             ('experts', 0), ('shared', 1), ('topk', 2), ('expert-hidden', 8),
             ('kv-lora', 0), ('nope', 4), ('rope', 4), ('v-dim', 4)]:
    p.add_argument('--' + k, type=int, default=v)
p.add_argument('--eps', type=float, default=1e-5)
p.add_argument('--theta', type=float, default=10000.0)
p.add_argument('--tied', action='store_true')
p.add_argument('--route-scale', type=float, default=1.0)
a = p.parse_args()
torch.manual_seed(a.seed)

m = reference.build(a)
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
if a.kv_lora:
    config.update({'kv_lora_rank': a.kv_lora, 'q_lora_rank': None, 'qk_nope_head_dim': a.nope, 'qk_rope_head_dim': a.rope, 'v_head_dim': a.v_dim})
if a.experts:
    config.update({'n_routed_experts': a.experts, 'n_shared_experts': a.shared, 'num_experts_per_tok': a.topk,
                   'moe_intermediate_size': a.expert_hidden, 'routed_scaling_factor': a.route_scale})
params = dict(m.named_parameters())
buffers = {n_: b_ for n_, b_ in m.named_buffers()}
save(os.path.join(a.out, 'model.safetensors'), {**params, **buffers}, {'config': json.dumps(config), 'format': 'pt'})
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
