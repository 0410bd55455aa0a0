"""Tests of models/llama.py: module names, RoPE and GQA against explicit references, causality."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsecc.models import get
from sparsecc.models.llama import (
    LLAMA3_8B,
    TINY_LLAMA,
    LlamaAttention,
    LlamaConfig,
    RotaryEmbedding,
    build_llama_layer,
    init_llama,
)
from sparsecc.models.seeding import seeded_generator

ROPE_CONFIG = LlamaConfig(hidden=32, ffn=64, heads=2, kv_heads=1, layers=1, vocab=16, max_seq=64)


def rope_tables(config: LlamaConfig) -> RotaryEmbedding:
    rotary = RotaryEmbedding(config)
    rotary.fill_tables()
    return rotary


def rotate_explicitly(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Reference RoPE for x [seq, d]: rotate pair (i, i + d/2) at position p by p * theta^(-2i/d)."""
    seq, head_dim = x.shape
    half = head_dim // 2
    out = torch.empty_like(x)
    for p in range(seq):
        for i in range(half):
            angle = p * theta ** (-2 * i / head_dim)
            c, s = math.cos(angle), math.sin(angle)
            out[p, i] = x[p, i] * c - x[p, i + half] * s
            out[p, i + half] = x[p, i + half] * c + x[p, i] * s
    return out


def test_modules_use_hugging_face_names():
    model = get("tiny-llama").model
    module_names = dict(model.named_modules())
    for name in ("embed_tokens", "layers.0.self_attn.q_proj", "layers.0.self_attn.k_proj",
                 "layers.1.self_attn.o_proj", "layers.0.mlp.gate_proj", "layers.0.mlp.up_proj",
                 "layers.1.mlp.down_proj", "layers.0.input_layernorm",
                 "layers.0.post_attention_layernorm", "norm", "lm_head"):
        assert name in module_names
    assert module_names["layers.0.self_attn.k_proj"].weight.shape == (2 * 16, 64)
    assert module_names["layers.0.mlp.gate_proj"].weight.shape == (176, 64)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 15 and all(linear.bias is None for linear in linears)
    assert "layers.0.self_attn.rotary_emb.cos" not in model.state_dict()


def test_rotary_embedding_matches_explicit_pair_rotation():
    rotary = rope_tables(ROPE_CONFIG)
    x = torch.randn(1, 1, 9, ROPE_CONFIG.head_dim, generator=torch.Generator().manual_seed(0))
    expected = rotate_explicitly(x[0, 0].double(), ROPE_CONFIG.rope_theta).float()
    torch.testing.assert_close(rotary(x)[0, 0], expected, atol=1e-5, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))
def test_rotary_scores_depend_only_on_relative_position(query_position, key_position, shift):
    rotary = rope_tables(ROPE_CONFIG)
    generator = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, ROPE_CONFIG.head_dim, generator=generator).double()
    positions = 64

    def rotated_at(vector: torch.Tensor, position: int) -> torch.Tensor:
        return rotary(vector.float().expand(1, 1, positions, -1))[0, 0, position].double()

    score = rotated_at(q, query_position) @ rotated_at(k, key_position)
    shifted = rotated_at(q, query_position + shift) @ rotated_at(k, key_position + shift)
    assert abs(score.item() - shifted.item()) < 1e-4
    assert abs(rotated_at(q, query_position).norm().item() - q.norm().item()) < 1e-4


def test_grouped_query_attention_matches_explicit_reference():
    config = LlamaConfig(hidden=32, ffn=48, heads=4, kv_heads=2, layers=1, vocab=16, max_seq=32)
    attention = init_llama(LlamaAttention(config), seeded_generator(0, "test"))
    x = torch.randn(2, 7, config.hidden, generator=torch.Generator().manual_seed(2))
    batch, seq, d = 2, 7, config.head_dim
    q = attention.rotary_emb(attention.q_proj(x).view(batch, seq, 4, d).transpose(1, 2))
    k = attention.rotary_emb(attention.k_proj(x).view(batch, seq, 2, d).transpose(1, 2))
    v = attention.v_proj(x).view(batch, seq, 2, d).transpose(1, 2)
    heads = []
    for head in range(config.heads):
        kv_head = head // config.queries_per_kv_head
        scores = q[:, head] @ k[:, kv_head].transpose(-1, -2) / math.sqrt(d)
        future = torch.triu(torch.ones(seq, seq, dtype=torch.bool), diagonal=1)
        weights = scores.masked_fill(future, float("-inf")).softmax(-1)
        heads.append(weights @ v[:, kv_head])
    expected = attention.o_proj(torch.cat(heads, dim=-1))
    with torch.no_grad():
        torch.testing.assert_close(attention(x), expected, atol=1e-5, rtol=1e-5)


def test_logits_are_causal():
    zoo_model = get("tiny-llama", batch=1, seq=12)
    tokens = zoo_model.example_inputs[0].clone()
    changed = tokens.clone()
    changed[0, 8] = (changed[0, 8] + 1) % 256
    with torch.no_grad():
        before, after = zoo_model.model(tokens), zoo_model.model(changed)
    torch.testing.assert_close(before[:, :8], after[:, :8], atol=0, rtol=0)
    assert not torch.allclose(before[:, 8:], after[:, 8:])


def test_tiny_llama_reads_utf8_bytes_of_real_text():
    tokens = get("tiny-llama", batch=4, seq=64).example_inputs[0]
    assert tokens.dtype == torch.int64 and 0 <= tokens.min() and tokens.max() < 256
    text = bytes(tokens[0].tolist()).decode("utf-8", errors="replace")
    assert sum(ch.isalpha() or ch.isspace() for ch in text) > 0.7 * len(text)


def test_config_rejects_inconsistent_sizes_and_long_sequences():
    with pytest.raises(ValueError, match="not divisible by heads"):
        LlamaConfig(hidden=30, ffn=8, heads=4, kv_heads=2, layers=1, vocab=8, max_seq=8)
    with pytest.raises(ValueError, match="not divisible by kv_heads"):
        LlamaConfig(hidden=24, ffn=8, heads=3, kv_heads=2, layers=1, vocab=8, max_seq=8)
    with pytest.raises(ValueError, match="exceeds max_seq"):
        get("tiny-llama", seq=TINY_LLAMA.max_seq + 1)


def test_tiny_llama3_layer_keeps_the_gqa_ratio():
    layer = get("llama3-8b-layer", tiny=True).model
    assert layer.self_attn.q_proj.weight.shape == (256, 256)
    assert layer.self_attn.k_proj.weight.shape == (2 * 32, 256)
    assert layer.mlp.up_proj.weight.shape == (896, 256)


@pytest.mark.slow
def test_full_llama3_8b_layer_shapes_and_forward():
    zoo_model = get("llama3-8b-layer")
    layer = zoo_model.model
    assert layer.self_attn.q_proj.weight.shape == (4096, 4096)
    assert layer.self_attn.k_proj.weight.shape == (1024, 4096)
    assert layer.mlp.gate_proj.weight.shape == (14336, 4096)
    assert layer.mlp.down_proj.weight.shape == (4096, 14336)
    assert layer.self_attn.rotary_emb.theta == 500000.0 and LLAMA3_8B.head_dim == 128
    expected_params = 2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 4096 * 14336 + 2 * 4096
    assert sum(p.numel() for p in layer.parameters()) == expected_params
    assert zoo_model.example_inputs[0].shape == (1, 128, 4096)
    with torch.no_grad():
        output = layer(*zoo_model.example_inputs)
    assert output.shape == (1, 128, 4096) and torch.isfinite(output).all()


@pytest.mark.slow
def test_full_llama3_8b_layer_weights_are_seeded():
    first = build_llama_layer(LLAMA3_8B, seed=0).mlp.down_proj.weight
    second = build_llama_layer(LLAMA3_8B, seed=0).mlp.down_proj.weight
    assert torch.equal(first, second)
    assert abs(first.std().item() - 0.02) < 1e-3
