"""The sentence-embedder options that LASER's published encoders need (``xling convert laser``):
``source_bos: false`` (the encoder reads ``x </s>``), ``final_norm`` (a LayerNorm after post-norm
transformer layers) and ``decoder: false`` (an encoder alone). Each is checked against the same
model computed another way; parity with LASER itself is tests/convert/test_laser_reference.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig
from xling.embeddings.decoding import EmbeddingStepDecoder
from xling.errors import XlingError
from xling.models.config import EncoderConfig
from xling.models.pooling import pool
from xling.tokenization.vocab import BOS, EOS

V = 30


def config(encoder="lstm", pre_norm=False, **kw) -> SentenceEmbedderConfig:
    t = EncoderConfig(vocab_size=V, n_langs=2, d_model=16, n_layers=2, n_heads=4, d_ff=32, max_positions=20,
                      dropout=0.0, attn_dropout=0.0, pre_norm=pre_norm) if encoder == "transformer" else None
    return SentenceEmbedderConfig(vocab_size=V, n_langs=2, encoder=encoder, transformer=t, emb_dim=8, hidden=8,
                                  n_layers=2, dec_emb_dim=8, dec_hidden=8, dropout=0.0, **kw)


def pair(encoder: str, **kw) -> tuple[SentenceEmbedder, SentenceEmbedder]:
    """The same weights with source_bos off and on."""
    torch.manual_seed(0)
    off = SentenceEmbedder(config(encoder, source_bos=False, **kw)).eval()
    on = SentenceEmbedder(config(encoder, source_bos=True, **kw)).eval()
    on.load_state_dict(off.state_dict())
    return off, on


def batch(rows: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


SENTS = [[7, 8, 9, 10], [11], [12, 13, 14, 15, 16, 17, 18]]


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_without_source_bos_the_encoder_reads_x_eos(encoder):
    off, on = pair(encoder)
    with torch.no_grad():
        got = off.embed(batch([[BOS, *s, EOS] for s in SENTS]))  # the layout every caller builds
        want = on.embed(batch([[*s, EOS] for s in SENTS]))  # what LASER feeds its encoder
        with_bos = on.embed(batch([[BOS, *s, EOS] for s in SENTS]))
    assert torch.equal(got, want) and not torch.allclose(got, with_bos)
    with pytest.raises(ValueError, match="start with the <s>"):
        off.embed(batch([[*s, EOS] for s in SENTS]))


def test_without_source_bos_one_more_token_fits():
    off, on = pair("transformer")
    assert (off.max_positions, on.max_positions) == (21, 20)
    with torch.no_grad():
        off.embed(batch([[BOS, *range(5, 24), EOS]]))  # 21 tokens with <s>: 20 positions used
    with pytest.raises(XlingError, match="exceeds max_positions"):
        on.embed(batch([[BOS, *range(5, 24), EOS]]))


def test_final_norm_normalises_the_encoder_states_before_pooling():
    torch.manual_seed(0)
    model = SentenceEmbedder(config("transformer", final_norm=True)).eval()
    with torch.no_grad():
        model.out_norm.weight.uniform_(0.5, 1.5)
        model.out_norm.bias.uniform_(-0.5, 0.5)
        tokens = batch([[BOS, *s, EOS] for s in SENTS])
        h = model.encoder(tokens)  # post-norm layers: no final LayerNorm of their own
        want = pool(F.layer_norm(h, (16,), model.out_norm.weight, model.out_norm.bias, 1e-5), tokens != 0, "max")
        assert model.encoder.final_norm is None
        torch.testing.assert_close(model.embed(tokens), want, rtol=0, atol=1e-6)


def test_without_a_decoder_it_embeds_and_refuses_to_decode(tmp_path):
    torch.manual_seed(0)
    model = SentenceEmbedder(config("lstm", decoder=False)).eval()
    assert model.decoder is None and not any(k.startswith("decoder.") for k in model.state_dict())
    tokens = batch([[BOS, *s, EOS] for s in SENTS])
    assert model(tokens).shape == (3, 16)
    with pytest.raises(XlingError, match="no decoder"):
        model(tokens, dec_tokens=tokens, dec_langs=torch.zeros_like(tokens))
    with pytest.raises(XlingError, match="no decoder"):
        EmbeddingStepDecoder(model, torch.zeros(1, 16), 0)
    model.save_pretrained(tmp_path / "m")
    back = SentenceEmbedder.from_pretrained(tmp_path / "m").eval()
    assert back.decoder is None and torch.equal(back(tokens), model(tokens))


@pytest.mark.parametrize("kw, says", [
    (dict(source_bos="no"), "source_bos: must be true or false"),
    (dict(decoder=0), "decoder: must be true or false"),
    (dict(pooling="cls", encoder="transformer", source_bos=False), "cls pools the <s> state"),
    (dict(final_norm=True), "final_norm: only for a post-norm transformer"),
    (dict(final_norm=True, encoder="transformer", pre_norm=True), "final_norm: only for a post-norm transformer"),
])
def test_config_errors(kw, says):
    with pytest.raises(XlingError, match=says):
        config(**kw)
