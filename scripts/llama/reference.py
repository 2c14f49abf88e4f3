"""The project's PyTorch reference of the Llama block (package llama), after
Hugging Face's LlamaForCausalLM (transformers' modeling_llama): RMSNorm
(weight * x / sqrt(mean(x^2) + eps)), rotary position embeddings with
rotate_half over the two halves of each head, grouped-query attention (query
head h reads key/value head h // (heads/kv_heads)), a SwiGLU MLP
(down(silu(gate(x)) * up(x))), no biases, optionally tied embeddings, under
Hugging Face's names and [out, in] layouts. Used by make_fixture.py and
bench.py; a is an object with the fields d, layers, heads, kv_heads, hidden,
vocab, eps, theta, tied."""
import math
import torch, torch.nn as nn, torch.nn.functional as F


def build(a):
    hd = a.d // a.heads
    assert a.d % a.heads == 0 and a.heads % a.kv_heads == 0 and hd % 2 == 0

    class RMSNorm(nn.Module):
        def __init__(s, width=a.d):
            super().__init__(); s.weight = nn.Parameter(torch.ones(width))
        def forward(s, x):
            return s.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + a.eps))

    def rope(T, hd=hd):
        inv = 1.0 / (a.theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        f = torch.arange(T).float()[:, None] * inv[None, :]
        emb = torch.cat([f, f], -1)
        return emb.cos(), emb.sin()

    def rotate_half(x):
        return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)

    class MLP(nn.Module):
        def __init__(s, width):
            super().__init__()
            s.gate_proj = nn.Linear(a.d, width, bias=False)
            s.up_proj = nn.Linear(a.d, width, bias=False)
            s.down_proj = nn.Linear(width, a.d, bias=False)
        def forward(s, x):
            return s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))

    class MoE(nn.Module):
        """DeepSeekMoE with DeepSeek-V3's routing: sigmoid affinities, top-k
        chosen by affinity plus the per-expert balancing bias (a buffer, not
        trained by gradient), weights the chosen affinities normalised to sum
        to 1 times the scaling factor, plus the shared experts."""
        def __init__(s):
            super().__init__()
            s.gate = nn.Module()
            s.gate.weight = nn.Parameter(torch.randn(a.experts, a.d) * 0.3)
            s.gate.register_buffer('e_score_correction_bias', torch.randn(a.experts) * 0.05)
            s.experts = nn.ModuleList([MLP(a.expert_hidden) for _ in range(a.experts)])
            s.shared_experts = MLP(a.expert_hidden * a.shared)
        def forward(s, x):
            B, T, D = x.shape
            h = x.reshape(-1, D)
            aff = torch.sigmoid(h @ s.gate.weight.t())
            idx = torch.topk(aff + s.gate.e_score_correction_bias, a.topk, dim=-1).indices
            w = aff.gather(1, idx)
            w = w / w.sum(-1, keepdim=True) * a.route_scale
            out = s.shared_experts(h)
            for e in range(a.experts):
                rows, pos = (idx == e).nonzero(as_tuple=True)
                if len(rows):
                    out = out.index_add(0, rows, w[rows, pos][:, None] * s.experts[e](h[rows]))
            return out.view(B, T, D)

    class MLA(nn.Module):
        """Multi-head latent attention (DeepSeek-V2) without query compression:
        keys and values come from one low-rank latent per position
        (kv_a_proj_with_mqa, RMSNorm, kv_b_proj), each head's query and key
        split into a part without position (nope) and a rotary part; the
        rotary key is one head shared by all. Rotary halves as rotate_half."""
        def __init__(s):
            super().__init__()
            dq = a.nope + a.rope
            s.q_proj = nn.Linear(a.d, a.heads * dq, bias=False)
            s.kv_a_proj_with_mqa = nn.Linear(a.d, a.kv_lora + a.rope, bias=False)
            s.kv_a_layernorm = RMSNorm(a.kv_lora)
            s.kv_b_proj = nn.Linear(a.kv_lora, a.heads * (a.nope + a.v_dim), bias=False)
            s.o_proj = nn.Linear(a.heads * a.v_dim, a.d, bias=False)
        def forward(s, h):
            B, T, _ = h.shape
            dq = a.nope + a.rope
            q = s.q_proj(h).view(B, T, a.heads, dq).transpose(1, 2)
            q_nope, q_pe = q[..., :a.nope], q[..., a.nope:]
            ckv = s.kv_a_proj_with_mqa(h)
            c, k_pe = ckv[..., :a.kv_lora], ckv[..., a.kv_lora:]
            kv = s.kv_b_proj(s.kv_a_layernorm(c)).view(B, T, a.heads, a.nope + a.v_dim).transpose(1, 2)
            k_nope, v = kv[..., :a.nope], kv[..., a.nope:]
            cos, sin = rope(T, a.rope)
            rh = lambda x: torch.cat([-x[..., a.rope // 2:], x[..., :a.rope // 2]], -1)
            q_pe = q_pe * cos + rh(q_pe) * sin
            k_pe = k_pe[:, None, :, :]
            k_pe = k_pe * cos + rh(k_pe) * sin
            q = torch.cat([q_nope, q_pe], -1)
            k = torch.cat([k_nope, k_pe.expand(B, a.heads, T, a.rope)], -1)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(dq)
            att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float('-inf')).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, a.heads * a.v_dim)
            return s.o_proj(y)

    class Layer(nn.Module):
        def __init__(s):
            super().__init__()
            s.input_layernorm = RMSNorm(); s.post_attention_layernorm = RMSNorm()
            s.mla = getattr(a, 'kv_lora', 0) > 0
            if s.mla:
                s.self_attn = MLA()
                s.mlp = MoE() if getattr(a, 'experts', 0) else MLP(a.hidden)
                return
            s.self_attn = nn.Module()
            s.self_attn.q_proj = nn.Linear(a.d, a.heads * hd, bias=False)
            s.self_attn.k_proj = nn.Linear(a.d, a.kv_heads * hd, bias=False)
            s.self_attn.v_proj = nn.Linear(a.d, a.kv_heads * hd, bias=False)
            s.self_attn.o_proj = nn.Linear(a.heads * hd, a.d, bias=False)
            s.mlp = MoE() if getattr(a, 'experts', 0) else MLP(a.hidden)
        def forward(s, x):
            B, T, _ = x.shape
            h = s.input_layernorm(x)
            if s.mla:
                x = x + s.self_attn(h)
                return x + s.mlp(s.post_attention_layernorm(x))
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
            return x + s.mlp(s.post_attention_layernorm(x))

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

    return Llama()
