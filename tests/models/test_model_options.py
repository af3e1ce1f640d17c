"""Model options other toolkits' checkpoints need (fairseq, original XLM): sinusoidal and
offset positions, embedding scaling, no embedding LayerNorm, a plain LM head without bias,
fairseq's source layout and decoder start. Each is checked against the computation written
out by hand; the defaults keep every earlier model bit-identical (tests/models/test_legacy_models)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xling.errors import XlingError
from xling.generation.decoders import step_decoder
from xling.models.config import EncoderConfig, Seq2SeqConfig
from xling.models.encoder import TransformerEncoder, sinusoidal_table
from xling.models.seq2seq import TransformerSeq2Seq

SIZES = dict(vocab_size=40, n_langs=2, d_model=16, n_layers=2, n_heads=2, d_ff=32, max_positions=24, dropout=0.0,
             attn_dropout=0.0)
FAIRSEQ = dict(positions="sinusoidal", position_offset=2, embed_scale=True, emb_norm=False, lm_transform=False,
               lm_bias=False, use_lang_embeddings=False, pre_norm=False, activation="relu")


def test_sinusoidal_table_by_hand():
    table = sinusoidal_table(10, 6, zero_row=1).numpy()
    half, step = 3, math.log(10000) / 2
    for p in (0, 2, 9):
        for i in range(half):
            w = math.exp(-i * step)
            assert table[p, i] == pytest.approx(math.sin(p * w), abs=1e-6)  # sines first ...
            assert table[p, half + i] == pytest.approx(math.cos(p * w), abs=1e-6)  # ... then cosines
    assert not table[1].any()  # the padding row
    assert sinusoidal_table(4, 7).shape == (4, 7) and not sinusoidal_table(4, 7)[:, 6].any()  # odd: zero column


def test_fairseq_style_embedding_and_head_by_hand():
    torch.manual_seed(0)
    m = TransformerEncoder(EncoderConfig(**SIZES, **FAIRSEQ)).eval()
    assert m.pos_emb is None and m.emb_norm is None and m.lm_transform is None and m.lm_head.bias is None
    assert "pos_table" not in m.state_dict()  # fixed, recomputed, never saved
    tokens = torch.tensor([[5, 6, 7, 3]])
    want = math.sqrt(16) * m.tok_emb.weight[tokens[0]] + sinusoidal_table(26, 16, 1)[2:6]  # positions 2..5
    assert torch.allclose(m.embed(tokens)[0], want, atol=1e-6)
    h = torch.randn(3, 16)
    assert torch.allclose(m.lm_logits(h), h @ m.tok_emb.weight.T, atol=1e-6)  # tied, no transform, no bias


def test_learned_positions_with_offset_and_scale():
    torch.manual_seed(0)
    m = TransformerEncoder(EncoderConfig(**SIZES, position_offset=2, embed_scale=True, emb_norm=False,
                                         use_lang_embeddings=False)).eval()
    assert m.pos_emb.weight.shape == (26, 16)  # max_positions + offset rows
    tokens = torch.tensor([[5, 6, 7]])
    want = 4.0 * m.tok_emb.weight[tokens[0]] + m.pos_emb.weight[2:5]
    assert torch.allclose(m.embed(tokens)[0], want, atol=1e-6)
    with pytest.raises(XlingError, match="exceeds max_positions=24"):
        m.embed(torch.ones(1, 25, dtype=torch.long))


def test_options_survive_save_and_load(tmp_path):
    torch.manual_seed(0)
    m = TransformerSeq2Seq(Seq2SeqConfig(**SIZES, **FAIRSEQ, n_dec_layers=2, source_bos=False,
                                         decoder_start="eos")).eval()
    m.save_pretrained(tmp_path / "m")
    again = TransformerSeq2Seq.from_pretrained(tmp_path / "m").eval()
    assert again.config == m.config
    tokens, dec = torch.tensor([[5, 6, 7, 3]]), torch.tensor([[3, 9, 10]])
    assert torch.equal(m(tokens, dec_tokens=dec), again(tokens, dec_tokens=dec))


def test_fairseq_layout_decoding_matches_the_full_forward():
    """source_bos False / decoder_start eos: the step decoder feeds `x </s>` to the encoder and
    `</s>` first to the decoder; its log-probs equal the full (no cache) forward's."""
    torch.manual_seed(0)
    m = TransformerSeq2Seq(Seq2SeqConfig(**SIZES, **FAIRSEQ, n_dec_layers=2, source_bos=False,
                                         decoder_start="eos")).eval()
    src, ys = [[5, 6, 7], [8, 9]], [11, 12, 13]
    dec = step_decoder(m, src, 0, 1, bos_id=2, eos_id=3)
    got = [dec.step(torch.full((2,), 2))]  # search feeds <s> first: the decoder starts from </s>
    for y in ys:
        got.append(dec.step(torch.full((2,), y)))
    tokens = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]])  # x </s>, right-padded
    dec_in = torch.tensor([[3, *ys]] * 2)  # </s> y
    with torch.no_grad():
        want = F.log_softmax(m.lm_logits(m(tokens, dec_tokens=dec_in)).float(), dim=-1)  # (2, 4, V)
    for t, lp in enumerate(got):
        assert torch.allclose(lp, want[:, t], atol=1e-5), t


@pytest.mark.parametrize("bad, match", [
    (dict(positions="rotary"), "positions"), (dict(position_offset=-1), "position_offset"),
])
def test_bad_options_are_one_line_errors(bad, match):
    with pytest.raises(XlingError, match=match):
        EncoderConfig(**SIZES, **bad)
    with pytest.raises(XlingError, match="decoder_start"):
        Seq2SeqConfig(**SIZES, decoder_start="pad")


def test_defaults_keep_the_xling_layout():
    c = EncoderConfig(**SIZES)
    assert (c.positions, c.position_offset, c.embed_scale, c.emb_norm, c.lm_transform, c.lm_bias) == (
        "learned", 0, False, True, True, True)
    s = Seq2SeqConfig(**SIZES)
    assert s.source_bos and s.decoder_start == "bos"
    assert Seq2SeqConfig(**SIZES, **FAIRSEQ).encoder_config().positions == "sinusoidal"  # the encoder gets them


def test_separate_decoder_tables_and_untied_output():
    """The decoder embeds with its own tables and predicts through its own projection (tied to its
    token embeddings unless untied_output); step decoding equals the full forward."""
    torch.manual_seed(0)
    cfg = dict(**SIZES, **{**FAIRSEQ, "positions": "learned", "emb_norm": True}, n_dec_layers=2, source_bos=False,
               decoder_start="eos", separate_decoder_embeddings=True)
    tied = TransformerSeq2Seq(Seq2SeqConfig(**cfg)).eval()
    untied = TransformerSeq2Seq(Seq2SeqConfig(**cfg, untied_output=True)).eval()
    assert tied.dec_head.weight is tied.dec_embed.tok_emb.weight
    assert untied.dec_head.weight is not untied.dec_embed.tok_emb.weight
    assert tied.dec_embed.tok_emb.weight is not tied.encoder.tok_emb.weight
    h = torch.randn(3, 16)
    assert torch.allclose(untied.lm_logits(h), h @ untied.dec_head.weight.T, atol=1e-6)  # (lm_bias: false)
    dec_in = torch.tensor([[3, 11, 12]])
    want = untied.dec_embed.embed(dec_in)  # the decoder's own tables, not the encoder's
    assert not torch.allclose(want, untied.encoder.embed(dec_in))
    src = [[5, 6, 7]]
    dec = step_decoder(untied, src, 0, 1, bos_id=2, eos_id=3)
    got = [dec.step(torch.full((1,), 2)), dec.step(torch.full((1,), 11)), dec.step(torch.full((1,), 12))]
    with torch.no_grad():
        full = F.log_softmax(untied.lm_logits(untied(torch.tensor([[5, 6, 7, 3]]), dec_tokens=dec_in)).float(), -1)
    for t, lp in enumerate(got):
        assert torch.allclose(lp, full[:, t], atol=1e-5), t
    with pytest.raises(XlingError, match="untied_output: needs separate_decoder_embeddings"):
        Seq2SeqConfig(**SIZES, **FAIRSEQ, untied_output=True)
    with pytest.raises(XlingError, match="need lm_transform: false"):
        Seq2SeqConfig(**SIZES, separate_decoder_embeddings=True)
