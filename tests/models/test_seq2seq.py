"""TransformerSeq2Seq: KV cache, masking semantics, save/load, XLM initialisation,
Seq2SeqObjective (layout, overfitting, a copy task decoded greedily by hand)."""

import json
from functools import partial

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import tiny as tiny_model
from xling.data.masking import IGNORE, MaskingConfig
from xling.errors import XlingError
from xling.models import masks
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq
from xling.objectives.base import predict_masked
from xling.objectives.mlm import MLMObjective
from xling.objectives.seq2seq import Seq2SeqObjective, SupervisedConfig

ATOL = 1e-5
BOS, EOS = 2, 3
SIZES = dict(vocab_size=100, n_langs=3, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=32)
norms = pytest.mark.parametrize("pre_norm", [True, False], ids=["pre_norm", "post_norm"])
pytestmark = pytest.mark.usefixtures("one_thread")
tiny = partial(tiny_model, n_dec_layers=2)  # a TransformerSeq2Seq


def rand_tokens(B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, 100, (B, T), generator=g)


def src_batch():
    """Two sources, the second right-padded, with language ids."""
    src = rand_tokens(2, 7, seed=5)
    src[1, 4:] = 0
    return src, torch.tensor([[0] * 7, [1] * 7])


def test_config():
    with pytest.raises(XlingError, match="n_dec_layers"):
        Seq2SeqConfig(vocab_size=100, n_langs=2, n_dec_layers=0)
    with pytest.raises(XlingError, match="n_heads"):
        Seq2SeqConfig(vocab_size=100, n_langs=2, d_model=30, n_heads=4)
    cfg = Seq2SeqConfig(**SIZES, n_dec_layers=3)
    assert cfg.encoder_config() == EncoderConfig(**SIZES)


@norms
def test_shapes_and_shared_weights(pre_norm):
    m = tiny(pre_norm, n_dec_layers=3)
    src, langs = src_batch()
    dec = rand_tokens(2, 5)
    h = m(src, langs=langs, dec_tokens=dec, dec_langs=torch.full_like(dec, 2))
    assert h.shape == (2, 5, 32) and torch.isfinite(h).all()
    assert m.lm_logits(h).shape == (2, 5, 100)
    assert len(m.dec_layers) == 3 and all(layer.cross_attn is not None for layer in m.dec_layers)
    assert (m.dec_final_norm is not None) == pre_norm
    enc = m.encoder
    assert enc.lm_head.weight is enc.tok_emb.weight
    # forward without decoder tokens is the encoder alone
    assert torch.equal(m(src, langs=langs), enc(src, langs=langs))
    assert torch.equal(m.encode(src, langs), enc(src, langs=langs))
    # the decoder listens to the source through cross-attention
    other = src.clone()
    other[0, 1] = (other[0, 1] + 1 - 5) % 95 + 5
    assert not torch.allclose(h[0], m(other, langs=langs, dec_tokens=dec, dec_langs=torch.full_like(dec, 2))[0])
    n_unique = sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())
    assert m.num_parameters() == n_unique


@norms
def test_kv_cache_matches_full_causal_forward(pre_norm):
    m = tiny(pre_norm)
    src, langs = src_batch()
    dec = rand_tokens(2, 8, seed=7)
    dec[1, 6:] = 0  # right padding in the second target
    dlangs = torch.full_like(dec, 2)
    mem = m.encode(src, langs)
    mem_pad = src != 0
    full = m.decode(dec, mem, mem_pad, langs=dlangs)  # one causal forward
    cache = m.new_cache()
    # a 3-token prompt (causal by default), then one token at a time, memory from the cache
    steps = [m.decode(dec[:, :3], mem, mem_pad, langs=dlangs[:, :3], cache=cache)]
    for i in range(3, 8):
        steps.append(m.decode(dec[:, i : i + 1], None, mem_pad, langs=dlangs[:, i : i + 1], cache=cache))
    inc = torch.cat(steps, dim=1)
    assert len(cache) == 8 and len(cache.self_attn[1]) == 8 and len(cache.cross_attn[1]) == 7
    assert torch.allclose(m.lm_logits(inc[0]), m.lm_logits(full[0]), atol=ATOL)
    assert torch.allclose(m.lm_logits(inc[1, :6]), m.lm_logits(full[1, :6]), atol=ATOL)
    # and forward() gives the same decoder states
    assert torch.allclose(m(src, langs=langs, dec_tokens=dec, dec_langs=dlangs), full, atol=ATOL)
    with pytest.raises(ValueError, match="memory"):
        m.decode(dec[:, :1], None, mem_pad, cache=m.new_cache())


@norms
def test_kv_cache_reorder_shares_memory_per_source(pre_norm):
    """Beam-search reorders: the beams of a source share one copy of its cross-attention
    memory (``group``), copied only when a source is dropped; an irregular reorder gives
    every row its own copy. At every step, the cached logits equal a full forward of each
    row's history against its source, with a large init so that a wrong row would show."""
    m = tiny(pre_norm, init_std=0.5)
    src = rand_tokens(3, 7, seed=5)
    src[1, 4:] = 0  # a padded source: its memory mask must follow its rows
    dl = 2
    mem, mem_pad = m.encode(src), src != 0
    cache = m.new_cache()
    rows = torch.arange(3)  # source of each live row
    hist = torch.full((3, 1), BOS)
    m.decode(hist, mem, mem_pad, langs=torch.full_like(hist, dl), cache=cache)
    g = torch.Generator().manual_seed(3)
    # (index into the live rows, expected group, expected memory rows kept)
    plan = [(torch.tensor([0, 0, 1, 1, 2, 2]), 2, 3),  # expand to 2 beams: no copy
            (torch.tensor([1, 0, 3, 3, 4, 5]), 2, 3),  # beams swap within sources: no copy
            (torch.tensor([0, 1, 4, 5]), 2, 2),  # source 1 ends: memory shrinks to 2 rows
            (torch.tensor([0, 2, 3]), 1, 3),  # irregular: one row per copy
            (torch.tensor([2, 0]), 1, 2)]
    for index, group, n_mem in plan:
        cache.reorder(index)
        rows, hist, mem_pad = rows[index], hist[index], mem_pad[index]
        assert cache.cross_attn[0].group == group and cache.cross_attn[1].k.shape[0] == n_mem
        tok = torch.randint(5, 100, (len(index), 1), generator=g)
        h = m.decode(tok, None, mem_pad, langs=torch.full_like(tok, dl), cache=cache)  # (B, 1, D)
        hist = torch.cat([hist, tok], 1)
        full = m.decode(hist, m.encode(src[rows]), src[rows] != 0, langs=torch.full_like(hist, dl))
        assert torch.allclose(m.lm_logits(h[:, 0]), m.lm_logits(full[:, -1]), atol=1e-4)


@norms
def test_source_padding_invariance(pre_norm):
    m = tiny(pre_norm)
    a, b = rand_tokens(1, 4, seed=2), rand_tokens(1, 7, seed=3)
    src = torch.zeros(2, 7, dtype=torch.long)
    src[0, :4], src[1] = a[0], b[0]
    langs = torch.tensor([[1] * 7, [0] * 7])
    dec = rand_tokens(2, 5, seed=4)
    dl = torch.full_like(dec, 2)
    h = m(src, langs=langs, dec_tokens=dec, dec_langs=dl)
    alone = m(a, langs=langs[:1, :4], dec_tokens=dec[:1], dec_langs=dl[:1])
    assert torch.allclose(h[0], alone[0], atol=ATOL)
    assert torch.allclose(h[1], m(b, langs=langs[1:], dec_tokens=dec[1:], dec_langs=dl[1:])[0], atol=ATOL)
    # padding the source of a single row changes nothing either (even all-real rows)
    padded = torch.cat([a, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    assert torch.allclose(m(padded, dec_tokens=dec[:1]), m(a, dec_tokens=dec[:1]), atol=ATOL)
    # decoder padding is never attended, even under a bidirectional decoder mask
    mem = m.encode(b)
    dpad = torch.cat([dec[:1], torch.zeros(1, 3, dtype=torch.long)], dim=1)
    bidi = masks.bidirectional(8)
    out = m.decode(dpad, mem, b != 0, attn_mask=bidi)[:, :5]
    assert torch.allclose(out, m.decode(dec[:1], mem, b != 0, attn_mask=bidi[:5, :5]), atol=ATOL)


@norms
def test_decoder_cannot_see_the_future(pre_norm):
    m = tiny(pre_norm)
    src, langs = src_batch()
    dec = rand_tokens(2, 6, seed=8)
    dec2 = dec.clone()
    dec2[:, 3:] = rand_tokens(2, 3, seed=9)
    h1 = m(src, langs=langs, dec_tokens=dec)
    h2 = m(src, langs=langs, dec_tokens=dec2)
    assert torch.allclose(h1[:, :3], h2[:, :3], atol=ATOL)
    assert not torch.allclose(h1[:, 3:], h2[:, 3:], atol=1e-3)
    # positions are those given: shifting them changes the output
    pos = torch.arange(2, 8)[None].expand(2, 6)
    assert not torch.allclose(h1, m(src, langs=langs, dec_tokens=dec, dec_positions=pos), atol=1e-3)


@norms
def test_save_load_bit_exact(tmp_path, pre_norm):
    m = tiny(pre_norm, n_dec_layers=3)
    with torch.no_grad():
        m.encoder.lm_head.bias.normal_()
    d = m.save_pretrained(tmp_path / "m", extra={"how": "test"})
    m2 = TransformerSeq2Seq.from_pretrained(d).eval()
    assert m2.config == m.config
    assert json.loads((d / "config.json").read_text())["model_type"] == "transformer_seq2seq"
    s1, s2 = m.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert m2.encoder.lm_head.weight is m2.encoder.tok_emb.weight
    src, langs = src_batch()
    dec = rand_tokens(2, 5)
    out, out2 = (x.lm_logits(x(src, langs=langs, dec_tokens=dec)) for x in (m, m2))
    assert torch.equal(out, out2)
    with pytest.raises(XlingError, match="model_type 'transformer_seq2seq'"):
        TransformerEncoder.from_pretrained(d)


def test_corrupt_checkpoint(tmp_path):
    d = tiny().save_pretrained(tmp_path / "m")
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-7] ^= 0x10
    w.write_bytes(bytes(data))
    with pytest.raises(XlingError, match=r"model\.safetensors.*sha256") as e:
        TransformerSeq2Seq.from_pretrained(d)
    assert "\n" not in str(e.value)
    w.write_bytes(b"")
    with pytest.raises(XlingError, match=r"model\.safetensors"):
        TransformerSeq2Seq.from_pretrained(d)


@norms
def test_from_encoder_is_xlm_initialisation(pre_norm):
    torch.manual_seed(3)
    xlm = TransformerEncoder(EncoderConfig(**SIZES, pre_norm=pre_norm)).eval()
    with torch.no_grad():  # as if trained: no parameter (LayerNorms included) at its initial value
        for p in xlm.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    m = TransformerSeq2Seq.from_encoder(xlm, n_dec_layers=3)
    assert not m.training and m.config.n_dec_layers == 3 and m.config.pre_norm == pre_norm
    src, langs = src_batch()
    assert torch.equal(m.encode(src, langs), xlm(src, langs=langs))
    h = m.encode(src, langs)
    assert torch.equal(m.lm_logits(h), xlm.lm_logits(h))
    for i, layer in enumerate(m.dec_layers):  # decoder layer i from encoder layer i % 2
        ref = xlm.layers[i % 2].state_dict()
        for name, t in layer.state_dict().items():
            if name.split(".")[0] in ("self_attn", "norm_attn", "ff", "norm_ff"):
                assert torch.equal(t, ref[name]), (i, name)
        assert torch.equal(layer.norm_cross.weight, torch.ones(32))  # fresh cross-attention
        assert not torch.equal(layer.cross_attn.q_proj.weight, xlm.layers[i % 2].self_attn.qkv_proj.weight[:32])
    if pre_norm:
        assert torch.equal(m.dec_final_norm.weight, xlm.final_norm.weight)
    # copies, not shared tensors: training the seq2seq model leaves the XLM alone
    assert m.encoder.tok_emb.weight.data_ptr() != xlm.tok_emb.weight.data_ptr()
    assert m.encoder.lm_head.weight is m.encoder.tok_emb.weight
    assert TransformerSeq2Seq.from_encoder(xlm).config.n_dec_layers == 2


def test_flops_per_token_matches_flop_counter():
    m = tiny().train()  # attention dropout: SDPA runs as countable matmuls
    B, S, T = 2, 7, 5
    src, dec = rand_tokens(B, S), rand_tokens(B, T, seed=2)
    with FlopCounterMode(display=False) as fc:
        m.lm_logits(m(src, dec_tokens=dec)).sum().backward()
    assert fc.get_total_flops() == pytest.approx(m.flops_per_token(S, tgt_len=T) * B * (S + T), rel=1e-9)


def test_mlm_trains_the_encoder_of_a_seq2seq_model():
    m = tiny()
    obj = MLMObjective(100, MaskingConfig(mask_prob=0.3))
    batch = obj.make_batch(list(rand_tokens(3, 9).numpy()), 1, np.random.default_rng(0))
    logits, targets = predict_masked(m, batch)
    hidden = m.encoder(batch["tokens"], langs=batch["langs"])
    assert torch.equal(logits, m.lm_logits(hidden[batch["targets"] != IGNORE]))
    loss, _ = obj.loss(m, batch)
    loss.backward()
    assert m.dec_layers[0].cross_attn.q_proj.weight.grad is None  # the decoder took no part
    assert m.encoder.layers[0].ff.fc1.weight.grad is not None


# --- Seq2SeqObjective -----------------------------------------------------------------


def test_seq2seq_batch_layout():
    obj = Seq2SeqObjective()
    b = obj.make_batch([([10, 11, 12], [20, 21]), ([13], [22, 23, 24])], (0, 1), np.random.default_rng(0))
    assert b["tokens"].tolist() == [[BOS, 10, 11, 12, EOS], [BOS, 13, EOS, 0, 0]]
    assert b["langs"].tolist() == [[0] * 5] * 2
    assert b["dec_tokens"].tolist() == [[BOS, 20, 21, 0], [BOS, 22, 23, 24]]
    assert b["dec_langs"].tolist() == [[1] * 4] * 2
    assert b["targets"].tolist() == [[20, 21, EOS, IGNORE], [22, 23, 24, EOS]]
    assert "dec_positions" not in b  # decoder positions default to 0..T-1
    with pytest.raises(XlingError, match="label_smoothing"):
        Seq2SeqObjective(label_smoothing=1.0)


def test_seq2seq_batch_in_fairseqs_layout():
    """source_bos=False: sources x </s>; decoder_start=eos: decoder inputs </s> y (targets unchanged)."""
    pairs = [([10, 11, 12], [20, 21]), ([13], [22, 23, 24])]
    b = Seq2SeqObjective(source_bos=False, decoder_start="eos").make_batch(pairs, (0, 1), np.random.default_rng(0))
    assert b["tokens"].tolist() == [[10, 11, 12, EOS], [13, EOS, 0, 0]]
    assert b["dec_tokens"].tolist() == [[EOS, 20, 21, 0], [EOS, 22, 23, 24]]
    assert b["targets"].tolist() == [[20, 21, EOS, IGNORE], [22, 23, 24, EOS]]
    b = Seq2SeqObjective(source_bos=False).make_batch(pairs, (0, 1), np.random.default_rng(0))
    assert b["dec_tokens"].tolist() == [[BOS, 20, 21, 0], [BOS, 22, 23, 24]]


def test_the_objectives_build_the_models_layout(vocabs):
    """translation builds the model's layout; mass, which builds xling's only, refuses fairseq's."""
    from xling.data.examples import DataConfig
    from xling.objectives.mass import MassConfig
    from xling.objectives.registry import BuildContext, objective_kind

    fairseq_layout = Seq2SeqConfig(**SIZES, source_bos=False, decoder_start="eos")
    sections = {"seq2seq": SupervisedConfig(),
                "masking": MaskingConfig(), "mass": MassConfig()}
    ctx = BuildContext(vocabs[0], "seq2seq", DataConfig(), sections, fairseq_layout)
    obj = objective_kind("translation").build(ctx)
    assert (obj.source_bos, obj.decoder_start) == (False, "eos")
    with pytest.raises(XlingError, match="objective mass: builds xling's layout only"):
        objective_kind("mass").build(ctx)
    xling_layout = BuildContext(vocabs[0], "seq2seq", DataConfig(), sections, Seq2SeqConfig(**SIZES))
    assert objective_kind("mass").build(xling_layout) is not None


def train(m, obj, batches, steps, lr):
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    m.train()
    losses = []
    for i in range(steps):
        loss, stats = obj.loss(m, batches(i))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    m.eval()
    return losses, stats


@norms
def test_seq2seq_overfits_a_fixed_batch(pre_norm):
    m = tiny(pre_norm, dropout=0.0, attn_dropout=0.0)
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(5, 100, rng.integers(3, 8)), rng.integers(5, 100, rng.integers(2, 7))) for _ in range(8)]
    obj = Seq2SeqObjective(label_smoothing=0.0)
    batch = obj.make_batch(pairs, (0, 1), rng)
    losses, stats = train(m, obj, lambda i: batch, 30, 1e-2)
    assert losses[-1] < 0.1 * losses[0], losses
    assert stats["tokens"] == float((batch["tokens"] != 0).sum() + (batch["dec_tokens"] != 0).sum())
    # label smoothing: the loss is the smoothed one, the plain one is reported as nll
    loss, stats = Seq2SeqObjective(label_smoothing=0.1).loss(m, batch)
    assert stats["nll/seq2seq"] < stats["loss/seq2seq"] == pytest.approx(loss.item())


def greedy(m, src, src_lang, tgt_lang, max_len):
    """Hand-written greedy decoding: argmax over ``decode`` steps with a KV cache."""
    tokens = torch.from_numpy(src)
    mem, mem_pad = m.encode(tokens, torch.full_like(tokens, src_lang)), tokens != 0
    cache = m.new_cache()
    prev = torch.full((len(src), 1), BOS)
    out = []
    for step in range(max_len):
        h = m.decode(prev, mem if step == 0 else None, mem_pad, langs=torch.full_like(prev, tgt_lang), cache=cache)
        prev = m.lm_logits(h[:, -1]).argmax(-1, keepdim=True)  # (B, 1)
        out.append(prev)
    rows = torch.cat(out, dim=1).tolist()
    return [r[: r.index(EOS)] if EOS in r else r for r in rows]


def test_copy_task_with_greedy_decoding():
    """Train a tiny model to copy 3-6 symbol sequences, then decode greedily by hand.

    d_model 64: at 32 the attention alignment is found after a seed-dependent plateau
    (100-400+ steps); at 64 every seed tried found it within ~150 steps."""
    torch.manual_seed(0)
    sizes = {**SIZES, "d_model": 64, "d_ff": 128}
    m = TransformerSeq2Seq(Seq2SeqConfig(**sizes, n_dec_layers=2, dropout=0.0, attn_dropout=0.0))
    obj = Seq2SeqObjective(label_smoothing=0.0)

    def sample(rng, n):
        xs = [rng.integers(5, 15, rng.integers(3, 7)) for _ in range(n)]
        return [(x, x.copy()) for x in xs]

    rng = np.random.default_rng(0)
    losses, _ = train(m, obj, lambda i: obj.make_batch(sample(rng, 64), (0, 1), rng), 250, 3e-3)
    test = sample(np.random.default_rng(123), 200)
    src = obj.make_batch(test, (0, 1), rng)["tokens"].numpy()
    with torch.no_grad():
        hyps = greedy(m, src, 0, 1, max_len=10)
    acc = np.mean([h == y.tolist() for h, (_, y) in zip(hyps, test)])
    assert acc >= 0.9, (acc, losses[-5:])
