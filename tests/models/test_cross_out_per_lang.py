"""Seq2SeqConfig.cross_out_per_lang: one cross-attention output projection per language, chosen by
each decoder row's target language (MASS's ``encoder_attn.i.out_lin.{lang}``). Its numerics
against MASS itself: tests/convert/test_xlm.py."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny

from xling.errors import XlingError
from xling.models.config import Seq2SeqConfig
from xling.models.layers import LangLinear
from xling.models.seq2seq import TransformerSeq2Seq


def _model(seed=0, **kw):
    return tiny(pre_norm=False, seed=seed, n_dec_layers=2, cross_out_per_lang=True, dropout=0.0, attn_dropout=0.0,
                **kw)


def _inputs(B=4, S=7, T=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(5, 100, (B, S), generator=g)
    src[0, -2:] = 0  # padding
    dec = torch.randint(5, 100, (B, T), generator=g)
    return src, dec


def _decode(model, src, dec, tgt_langs):
    langs = tgt_langs[:, None].expand_as(dec)
    memory = model.encode(src, langs=torch.zeros_like(src))
    return model.decode(dec, memory, src != 0, langs=langs)


def test_config_is_validated():
    with pytest.raises(XlingError, match="cross_out_per_lang"):
        Seq2SeqConfig(vocab_size=10, n_langs=2, d_model=8, n_heads=2, cross_out_per_lang="yes")
    model = _model()
    assert isinstance(model.dec_layers[0].cross_attn.out_proj, LangLinear)
    assert model.dec_layers[0].cross_attn.out_proj.weight.shape == (3, 32, 32)  # one (D, D) per language


def test_decoding_needs_the_target_language():
    model = _model()
    src, dec = _inputs()
    memory = model.encode(src)
    with pytest.raises(XlingError, match="pass langs"):
        model.decode(dec, memory, src != 0)
    with pytest.raises(XlingError, match="language id"):
        model.decode(dec, memory, src != 0, langs=torch.full_like(dec, 7))


def test_each_row_uses_its_language_projection():
    """A batch mixing target languages gives each row what it gets in a batch of its language alone,
    and the projection of language l is the plain cross-attention output a model without the option
    has when it holds language l's weights."""
    model = _model().eval()
    src, dec = _inputs()
    mixed = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        h = _decode(model, src, dec, mixed)
        for lang in range(3):
            alone = _decode(model, src, dec, torch.full((4,), lang))
            rows = mixed == lang
            torch.testing.assert_close(h[rows], alone[rows], atol=1e-5, rtol=0)
            plain = tiny(pre_norm=False, seed=0, n_dec_layers=2, dropout=0.0, attn_dropout=0.0).eval()
            state = model.state_dict()
            for k in [k for k in state if "cross_attn.out_proj" in k]:
                state[k] = state[k][lang]
            plain.load_state_dict(state)
            torch.testing.assert_close(_decode(plain, src, dec, torch.full((4,), lang)), alone, atol=1e-5, rtol=0)
    assert not torch.allclose(_decode(model, src, dec, torch.zeros(4, dtype=torch.long)),
                              _decode(model, src, dec, torch.ones(4, dtype=torch.long)))


def test_incremental_decoding_matches_the_full_pass():
    model = _model().eval()
    src, dec = _inputs()
    tgt = torch.tensor([1, 1, 2, 0])
    with torch.no_grad():
        full = _decode(model, src, dec, tgt)
        memory = model.encode(src, langs=torch.zeros_like(src))
        cache, steps = model.new_cache(), []
        for t in range(dec.shape[1]):
            tok = dec[:, t : t + 1]
            steps.append(model.decode(tok, memory if t == 0 else None, src != 0, langs=tgt[:, None], cache=cache))
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=0)


def test_save_and_load(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "m")
    back = TransformerSeq2Seq.from_pretrained(tmp_path / "m").eval()
    assert back.config.cross_out_per_lang
    src, dec = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(_decode(back, src, dec, torch.tensor([0, 1, 2, 0])),
                                   _decode(model.eval(), src, dec, torch.tensor([0, 1, 2, 0])))
