"""TransformerEncoder and layers: shapes, masking semantics, KV cache, FLOP count."""

import math
from functools import partial

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny as tiny_model
from xling.errors import XlingError
from xling.models import masks
from xling.models.config import EncoderConfig
from xling.models.layers import LayerKV, MultiHeadAttention, few_query_attention

ATOL = 1e-5


tiny = partial(tiny_model, max_positions=16)  # a TransformerEncoder


def rand_tokens(B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, 100, (B, T), generator=g)


norms = pytest.mark.parametrize("pre_norm", [True, False], ids=["pre_norm", "post_norm"])


def test_config_validation():
    with pytest.raises(XlingError, match="n_heads"):
        EncoderConfig(vocab_size=100, n_langs=2, d_model=30, n_heads=4)
    with pytest.raises(XlingError, match="n_layers"):
        EncoderConfig(vocab_size=100, n_langs=2, n_layers=0)
    with pytest.raises(XlingError, match="activation"):
        EncoderConfig(vocab_size=100, n_langs=2, activation="swishy")


def test_attention_matches_naive_reference():
    torch.manual_seed(0)
    att = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, 5, 32)
    mask = masks.combine(masks.causal(5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool())
    q, k, v = att.qkv_proj(x).split(32, dim=-1)
    heads = lambda t: t.view(2, 5, 4, 8).transpose(1, 2)  # (B, H, T, hd)
    q, k, v = heads(q), heads(k), heads(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(~mask[:, None], float("-inf"))
    ref = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 32)
    ref = att.out_proj(ref)
    assert torch.allclose(att(x, mask[:, None]), ref, atol=ATOL)


@norms
def test_shapes_and_logits(pre_norm):
    m = tiny(pre_norm)
    t = rand_tokens(3, 7)
    h = m(t, langs=torch.zeros_like(t))
    assert h.shape == (3, 7, 32)
    assert m.lm_logits(h[:, :2]).shape == (3, 2, 100)
    assert m.lm_head.weight is m.tok_emb.weight
    assert torch.isfinite(h).all()


@norms
def test_padding_invariance(pre_norm):
    m = tiny(pre_norm)
    a, b = rand_tokens(1, 4, seed=2), rand_tokens(1, 7, seed=3)
    batch = torch.zeros(2, 7, dtype=torch.long)
    batch[0, :4], batch[1] = a[0], b[0]
    langs = torch.tensor([[1] * 7, [2] * 7])
    h = m(batch, langs=langs)
    assert torch.isfinite(h).all()
    assert torch.allclose(h[0, :4], m(a, langs=langs[:1, :4])[0], atol=ATOL)
    assert torch.allclose(h[1], m(b, langs=langs[1:])[0], atol=ATOL)
    # the same with a user mask (dense path) against the causal fast path
    hc = m(batch, attn_mask=masks.causal(7))
    assert torch.allclose(hc[0, :4], m(a, attn_mask=masks.causal(4))[0], atol=ATOL)


def test_positions_and_langs_change_output():
    m = tiny()
    t = rand_tokens(1, 5)
    base = m(t)
    assert not torch.allclose(base, m(t, langs=torch.ones_like(t)), atol=1e-3)
    assert not torch.allclose(base, m(t, positions=torch.arange(5, 10)[None]), atol=1e-3)
    assert torch.allclose(base, m(t, positions=torch.arange(5)[None]), atol=ATOL)
    no_lang = tiny(use_lang_embeddings=False)
    assert torch.allclose(no_lang(t), no_lang(t, langs=torch.ones_like(t)), atol=ATOL)
    with pytest.raises(XlingError, match="max_positions"):
        m(rand_tokens(1, 17))
    with pytest.raises(XlingError, match="position 16 outside"):
        m(t, positions=torch.arange(12, 17)[None])
    with pytest.raises(XlingError, match="language id 3 outside"):
        m(t, langs=torch.full_like(t, 3))


@norms
def test_causal_mask_blocks_the_future(pre_norm):
    m = tiny(pre_norm)
    t = rand_tokens(2, 6)
    t2 = t.clone()
    t2[:, 3:] = rand_tokens(2, 3, seed=9)
    for mask in (masks.causal(6), masks.causal(6)[None].expand(2, 6, 6)):
        h1, h2 = m(t, attn_mask=mask), m(t2, attn_mask=mask)
        assert torch.allclose(h1[:, :3], h2[:, :3], atol=ATOL)
        assert not torch.allclose(h1[:, 3:], h2[:, 3:], atol=1e-3)
    hb1, hb2 = m(t), m(t2)  # bidirectional: the past does see the future
    assert not torch.allclose(hb1[:, :3], hb2[:, :3], atol=1e-3)
    r2l = masks.right_to_left(6)
    t3 = t.clone()
    t3[:, :2] = rand_tokens(2, 2, seed=4)
    assert torch.allclose(m(t, attn_mask=r2l)[:, 2:], m(t3, attn_mask=r2l)[:, 2:], atol=ATOL)


@norms
def test_kv_cache_matches_full_causal_forward(pre_norm):
    m = tiny(pre_norm, init_std=0.2)  # large weights: attention matters, so a wrong cache cannot hide
    t = rand_tokens(2, 8)
    t[1, 6:] = 0  # right padding in the second sequence
    langs = torch.tensor([[0] * 8, [2] * 8])
    full = m(t, langs=langs, attn_mask=masks.causal(8))
    cache = m.new_cache()
    # a 3-token prompt with a causal mask, then one token at a time without a mask
    steps = [m(t[:, :3], langs=langs[:, :3], attn_mask=masks.causal(3), cache=cache)]
    for i in range(3, 8):
        steps.append(m(t[:, i : i + 1], langs=langs[:, i : i + 1], cache=cache))
    inc = torch.cat(steps, dim=1)
    assert len(cache) == 8 and len(cache.self_attn[0]) == 8
    assert torch.allclose(inc[0], full[0], atol=ATOL)
    assert torch.allclose(inc[1, :6], full[1, :6], atol=ATOL)
    # the check has teeth: a prompt fed without its causal mask (sees the future) differs
    bad = m.new_cache()
    wrong = [m(t[:, :3], langs=langs[:, :3], cache=bad)]
    wrong += [m(t[:, i : i + 1], langs=langs[:, i : i + 1], cache=bad) for i in range(3, 8)]
    assert (torch.cat(wrong, dim=1)[0] - full[0]).abs().max() > 100 * ATOL
    # reorder keeps the selected rows
    cache.reorder(torch.tensor([1, 1]))
    assert torch.equal(cache.self_attn[1].k[0], cache.self_attn[1].k[1])


def test_cross_attention_cache_reuses_memory():
    torch.manual_seed(0)
    att = MultiHeadAttention(32, 4, cross=True).eval()
    x, mem = torch.randn(2, 3, 32), torch.randn(2, 5, 32)
    kv = LayerKV()
    first = att(x, kv=mem, cache=kv)
    again = att(x, kv=None, cache=kv)  # memory taken from the cache
    assert torch.equal(first, again) and len(kv) == 5
    mask = masks.cross(3, torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool())[:, None]
    out = att(x, mask, kv=mem)
    assert torch.allclose(out[0], att(x[:1], kv=mem[:1, :3])[0], atol=ATOL)


def test_lazy_reorder_equals_eager_index_select_and_cat():
    """LayerKV defers reorder to the next append (one fused copy); the result must be
    bit-identical to reordering at once with index_select and appending with cat."""
    g = torch.Generator().manual_seed(3)
    kv, ref_k, ref_v = LayerKV(), None, None
    steps = [(6, None), (6, [5, 0, 0, 2, 3, 1]), (6, [1, 1, 4, 2]), (4, [3, 2, 0]), (3, None), (3, [2, 2, 0, 1])]
    for i, (B, index) in enumerate(steps):
        if index is not None:
            idx = torch.tensor(index)
            kv.reorder(idx)
            ref_k, ref_v = ref_k.index_select(0, idx), ref_v.index_select(0, idx)
            if i == 3:  # a second reorder before the append composes with the first
                idx2 = torch.tensor([2, 0, 1])
                kv.reorder(idx2)
                ref_k, ref_v = ref_k.index_select(0, idx2), ref_v.index_select(0, idx2)
            B = ref_k.shape[0]
        k, v = torch.randn(B, 2, 1, 4, generator=g), torch.randn(B, 2, 1, 4, generator=g)
        ref_k = k if ref_k is None else torch.cat([ref_k, k], 2)
        ref_v = v if ref_v is None else torch.cat([ref_v, v], 2)
        out_k, out_v = kv.append(k, v)
        assert torch.equal(out_k, ref_k) and torch.equal(out_v, ref_v) and out_k.is_contiguous()
    assert len(kv) == len(steps)
    kv.reorder(torch.tensor([2, 0]))  # reading k / v applies a pending reorder
    assert torch.equal(kv.k, ref_k[[2, 0]]) and torch.equal(kv.v, ref_v[[2, 0]])
    kv.reorder(torch.tensor([1]))
    kv.truncate(4)  # truncation keeps the pending reorder
    assert torch.equal(kv.k, ref_k[[0], :, :4])


def test_lazy_reorder_keeps_autograd():
    kv = LayerKV()
    w = torch.randn(2, 1, 1, 3, requires_grad=True)
    kv.append(w * 1.0, w * 2.0)
    kv.reorder(torch.tensor([1, 1, 0]))
    k, _ = kv.append(torch.zeros(3, 1, 1, 3), torch.zeros(3, 1, 1, 3))
    k.sum().backward()
    assert torch.equal(w.grad, torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 1, 3))


@pytest.mark.parametrize("Tq", [1, 2, 5, 8])
def test_few_query_attention_matches_sdpa(Tq):
    g = torch.Generator().manual_seed(Tq)
    q, k, v = (torch.randn(3, 4, T, 8, generator=g) for T in (Tq, 11, 11))
    mask = torch.rand(3, 1, Tq, 11, generator=g) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    for m in (None, mask):
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)
        assert torch.allclose(few_query_attention(q, k, v, m), ref, atol=1e-6)


def test_decoding_steps_use_few_query_attention(monkeypatch):
    """With a cache and at most FEW_QUERIES queries the plain-matmul path runs (and gives
    the SDPA result); a full forward keeps SDPA."""
    from xling.models import layers

    calls = []
    monkeypatch.setattr(layers, "few_query_attention",
                        lambda *a: calls.append(a[0].shape) or layers.F.scaled_dot_product_attention(*a[:3], attn_mask=a[3]))
    m = tiny()
    t = rand_tokens(2, 6)
    full = m(t, attn_mask=masks.causal(6))
    cache = m.new_cache()
    assert not calls
    steps = [m(t[:, i : i + 1], cache=cache) for i in range(6)]
    assert len(calls) == 6 * m.config.n_layers and all(s[2] == 1 for s in calls)
    assert torch.allclose(torch.cat(steps, 1), full, atol=ATOL)


def test_flops_per_token_matches_flop_counter():
    m = tiny().train()  # attention dropout: SDPA runs as countable matmuls
    B, T = 2, 8
    t = rand_tokens(B, T)
    with FlopCounterMode(display=False) as fc:
        m.lm_logits(m(t)).sum().backward()
    assert fc.get_total_flops() == pytest.approx(m.flops_per_token(T) * B * T, rel=1e-9)
    sel = 4
    m.zero_grad()
    with FlopCounterMode(display=False) as fc:
        m.lm_logits(m(t).reshape(-1, 32)[:sel]).sum().backward()
    assert fc.get_total_flops() == pytest.approx(m.flops_per_token(T, lm_fraction=sel / (B * T)) * B * T, rel=1e-9)


@norms
def test_training_step_reduces_loss(pre_norm):
    m = tiny(pre_norm, dropout=0.0, attn_dropout=0.0).train()
    t = rand_tokens(4, 8)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        logits = m.lm_logits(m(t))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 100), t.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]  # copying the input is easy
