"""xling convert xlm: original XLM (mlm_*.pth) and MASS (mass_*.pth) checkpoints, checked against
reference code.

Tiny random checkpoints laid out as XLM's and MASS's trainers write them (tests/helpers.py:
``write_xlm_model``; fastBPE codes learned on the fixture's English and French Bibles) are converted
with the CLI, and compared on Bible verses of both languages, as XLM feeds them (``</s> x </s>``
with language ids, padded in one batch):

- the MLM encoder against ``transformers``' XLMModel / XLMWithLMHeadModel loaded with the same
  weights (transformers' reimplementation of XLM): hidden states and LM log-probabilities;
- the token ids of the converted vocabulary against transformers' XLMTokenizer;
- MASS's encoder against XLMModel, its decoder (no installable reference: transformers' XLM has
  no decoder) against ``mass_forward`` below, a functional transcription of MASS-unsupNMT's
  ``TransformerModel.fwd`` and ``generate``; ``xling translate`` greedy against MASS's greedy loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import bible_texts, hf_xlm, hf_xlm_tokenizer, write_xlm_model

from xling.cli import main
from xling.convert.xlm import vocab_rows
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq
from xling.tokenization.bpe import BpeVocab
from xling.tokenization.vocab import Vocab

TOL = 1e-5
N_SENTENCES = 10  # per language


@pytest.fixture(scope="module")
def bible(tmp_path_factory):
    return bible_texts(tmp_path_factory.mktemp("bible") / "corpus")


@pytest.fixture(scope="module")
def converted(bible, tmp_path_factory):
    """kind -> (the checkpoint dict, its write_xlm_model record, the converted directory)."""
    d = tmp_path_factory.mktemp("xlm")
    out = {}
    for kind in ("mlm", "mass", "mt"):
        rec = write_xlm_model(d / kind, kind=kind, texts=bible, n_merges=400, seed=5)
        assert main(["convert", "xlm", "--input", str(rec["checkpoint"]), "--codes", str(rec["codes"]),
                     "--out", str(d / kind / "out")]) == 0
        out[kind] = (torch.load(rec["checkpoint"], weights_only=False), rec, d / kind / "out")
    return out


def sentences(bible) -> list[tuple[str, str]]:
    """(language, verse): the first verses of the test split of each language."""
    return [(lang, text) for lang in ("en", "fr") for text in bible[lang][-N_SENTENCES:]]


def batches(vocab: Vocab, rows: list[int], lang_ids: dict, items: list[tuple[str, str]]):
    """The same sentences as XLM feeds them (its ids, ``</s> x </s>``, pad 2) and as xling feeds
    them (``<s> x </s>``, pad 0); language ids and the real-token mask (B, T)."""
    ids = [vocab.encode(text, lang) for lang, text in items]
    T = max(len(x) for x in ids) + 2
    xlm = torch.full((len(ids), T), 2, dtype=torch.long)
    xl = torch.zeros((len(ids), T), dtype=torch.long)
    langs = torch.zeros((len(ids), T), dtype=torch.long)
    real = torch.zeros((len(ids), T), dtype=torch.bool)
    for b, ((lang, _), x) in enumerate(zip(items, ids)):
        n = len(x) + 2
        xlm[b, :n] = torch.tensor([1, *(rows[i] for i in x), 1])
        xl[b, :n] = torch.tensor([vocab.bos_id, *x, vocab.eos_id])
        langs[b] = lang_ids[lang]
        real[b, :n] = True
    return xlm, xl, langs, real


def compare_logprobs(xl_logits: torch.Tensor, ref_logits: torch.Tensor, rows: list[int], real: torch.Tensor) -> float:
    """Max |difference| of the log-probabilities of every XLM token (under its xling id) at real
    positions; xling's <s> (a copy of XLM's </s> for input only) must have no probability."""
    a = F.log_softmax(xl_logits.double(), -1)[real]  # (N, V_xling)
    b = F.log_softmax(ref_logits.double(), -1)[real]  # (N, V_xlm)
    assert a[:, 2].exp().max() < 1e-30
    keep = [i for i in range(len(rows)) if i != 2]
    return float((a[:, keep] - b[:, [rows[i] for i in keep]]).abs().max())


# ----------------------------------------------------------------------------- the MLM encoder


def test_mlm_matches_transformers_xlm(converted, bible, one_thread):
    ckpt, rec, out = converted["mlm"]
    model = TransformerEncoder.from_pretrained(out).eval()
    vocab = Vocab.load(out)
    assert isinstance(vocab, BpeVocab) and vocab.languages == ["en", "fr"]
    _, rows, _ = vocab_rows(rec["words"])
    xlm, xl, langs, real = batches(vocab, rows, ckpt["params"]["lang2id"], sentences(bible))
    ref = hf_xlm(ckpt["model"], ckpt["params"])
    with torch.no_grad():
        out_ref = ref(input_ids=xlm, langs=langs, attention_mask=real.long(), output_hidden_states=True)
        hidden = model(xl, langs=langs)
        logits = model.lm_logits(hidden)
    h_diff = float((hidden - out_ref.hidden_states[-1])[real].abs().max())
    lp_diff = compare_logprobs(logits, out_ref.logits, rows, real)
    print(f"XLM MLM vs transformers: hidden max|diff| {h_diff:.2e}, log-prob max|diff| {lp_diff:.2e}")
    assert h_diff < TOL and lp_diff < TOL
    with torch.no_grad():  # XLMModel (no LM head) is the same transformer
        base = hf_xlm(ckpt["model"], ckpt["params"], lm=False)(input_ids=xlm, langs=langs, attention_mask=real.long())
    assert float((hidden - base.last_hidden_state)[real].abs().max()) < TOL


@pytest.mark.parametrize("lower", [True, False])
def test_token_ids_match_xlm_tokenizer(converted, bible, tmp_path, lower):
    """The converted vocabulary segments like transformers' XLMTokenizer (Moses pipeline, optional
    lowercasing and accent removal, BPE), with the same dictionary and codes; Unicode punctuation
    included. (``_tokenize`` is the tokenizer's language-aware entry: transformers 5's ``tokenize``
    no longer passes ``lang`` on.)"""
    ckpt, rec, out = converted["mlm"]
    assert Vocab.load(out).meta["normalize"][-1] == "lowercase_accents"  # auto: a lowercased dictionary
    if not lower:
        out = tmp_path / "cased"
        assert main(["convert", "xlm", "--input", str(rec["checkpoint"]), "--codes", str(rec["codes"]),
                     "--out", str(out), "--lowercase", "no"]) == 0
    vocab = Vocab.load(out)
    ref = hf_xlm_tokenizer(rec["words"], rec["codes"], ckpt["params"], lower, tmp_path)
    _, rows, _ = vocab_rows(rec["words"])
    extra = ["« Bonjour » — dit‑il… “Oui” ！ ２０ ％ 【x】", "Ｆｕｌｌ-width：test？ L’Homme « là » 。Fin．"]
    items = sentences(bible) + [(lang, t) for lang in ("en", "fr") for t in extra]
    n_unk = 0
    for lang, text in items:
        mine = vocab.encode(text, lang)
        assert [rows[i] for i in mine] == ref.convert_tokens_to_ids(ref._tokenize(text, lang=lang)), text
        n_unk += mine.count(vocab.unk_id)
    assert n_unk  # subwords outside the dictionary are <unk> on both sides
    assert vocab.encode_batch([t for _, t in items[:3]], "en") == [vocab.encode(t, "en") for _, t in items[:3]]


def test_control_characters_become_spaces_as_in_moses(converted):
    """Moses' remove-non-printing-char.perl (what XLM ran) turns \\p{C} characters into spaces;
    transformers' port deletes them. xling follows the Perl script."""
    vocab = Vocab.load(converted["mlm"][2])
    assert vocab.encode("the\u200bearth\tand", "en") == vocab.encode("the earth and", "en")


# ----------------------------------------------------------------------------- MASS / XLM encoder-decoders


def _lin(W: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, W[f"{name}.weight"], W[f"{name}.bias"])


def _ln(W: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], W[f"{name}.weight"], W[f"{name}.bias"], eps=1e-12)


def _attention(W: dict, name: str, x, kv, mask, n_heads: int, out_lin: str) -> torch.Tensor:
    """MASS's MultiHeadAttention.forward without cache: mask (B, Tk) or (B, Tq, Tk), True = attend."""
    bs, qlen, dim = x.shape
    dh = dim // n_heads

    def shape(t):
        return t.view(bs, -1, n_heads, dh).transpose(1, 2)

    q = shape(_lin(W, f"{name}.q_lin", x)) / math.sqrt(dh)
    k, v = shape(_lin(W, f"{name}.k_lin", kv)), shape(_lin(W, f"{name}.v_lin", kv))
    scores = q @ k.transpose(2, 3)
    m = mask.view(bs, 1, qlen, -1) if mask.dim() == 3 else mask.view(bs, 1, 1, -1)
    scores = scores.masked_fill(~m.expand_as(scores), -float("inf"))
    ctx = (F.softmax(scores.float(), -1) @ v).transpose(1, 2).reshape(bs, qlen, dim)
    return _lin(W, out_lin, ctx)


def mass_forward(W: dict, p: dict, x: torch.Tensor, lengths: torch.Tensor, langs: torch.Tensor, causal: bool,
                 src_enc=None, src_len=None, n_layers=None) -> torch.Tensor:
    """MASS-unsupNMT TransformerModel.fwd (eval mode, batch first): x (B, T) XLM ids -> (B, T, D)."""
    bs, slen = x.shape
    alen = torch.arange(slen)
    mask = alen < lengths[:, None]
    attn_mask = (alen[None, None, :].repeat(bs, slen, 1) <= alen[None, :, None]) if causal else mask
    h = W["embeddings.weight"][x] + W["position_embeddings.weight"][alen][None]
    if "lang_embeddings.weight" in W:
        h = h + W["lang_embeddings.weight"][langs]
    h = _ln(W, "layer_norm_emb", h) * mask[..., None]
    lang_id = int(langs.max())  # MASS: one target language per batch
    for i in range(n_layers or p["n_layers"]):
        h = _ln(W, f"layer_norm1.{i}", h + _attention(W, f"attentions.{i}", h, h, attn_mask, p["n_heads"],
                                                         f"attentions.{i}.out_lin"))
        if src_enc is not None:
            src_mask = torch.arange(int(src_len.max()))[None] < src_len[:, None]
            out = f"encoder_attn.{i}.out_lin" + (f".{lang_id}" if f"encoder_attn.{i}.out_lin.0.weight" in W else "")
            h = _ln(W, f"layer_norm15.{i}", h + _attention(W, f"encoder_attn.{i}", h, src_enc, src_mask,
                                                              p["n_heads"], out))
        ff = _lin(W, f"ffns.{i}.lin2", F.gelu(_lin(W, f"ffns.{i}.lin1", h)))
        h = _ln(W, f"layer_norm2.{i}", h + ff) * mask[..., None]
    return h


def mass_scores(W: dict, h: torch.Tensor) -> torch.Tensor:
    return F.linear(h, W["pred_layer.proj.weight"], W["pred_layer.proj.bias"])


def mass_greedy(ckpt: dict, src: list[int], src_lang: int, tgt_lang: int, max_len: int) -> list[int]:
    """MASS's ``generate`` (greedy) for one source of XLM ids (without </s>): up to ``max_len``
    tokens after the starting </s>; the XLM ids generated, without the final </s>."""
    p, enc, dec = ckpt["params"], ckpt["encoder"], ckpt["decoder"]
    x = torch.tensor([[1, *src, 1]])
    src_len = torch.tensor([x.shape[1]])
    with torch.no_grad():
        memory = mass_forward(enc, p, x, src_len, torch.full_like(x, src_lang), causal=False)
        out = [1]
        while len(out) <= max_len:
            y = torch.tensor([out])
            h = mass_forward(dec, p, y, torch.tensor([len(out)]), torch.full_like(y, tgt_lang), causal=True,
                             src_enc=memory, src_len=src_len, n_layers=p["n_dec_layers"])
            nxt = int(mass_scores(dec, h[0, -1]).argmax())
            if nxt == 1:
                break
            out.append(nxt)
    return out[1:]


@pytest.mark.parametrize("kind", ["mass", "mt"])
def test_encoder_decoder_matches_reference(converted, bible, kind, one_thread):
    """MASS (per-language cross-attention outputs) and XLM's own encoder-decoder (one): the encoder
    against transformers' XLMModel, the decoder's log-probabilities against mass_forward, teacher
    forced on the verse's translation-direction target (the other language's verses)."""
    ckpt, rec, out = converted[kind]
    model = TransformerSeq2Seq.from_pretrained(out).eval()
    assert model.config.cross_out_per_lang == (kind == "mass")
    vocab = Vocab.load(out)
    _, rows, _ = vocab_rows(rec["words"])
    lang2id = ckpt["params"]["lang2id"]
    items = sentences(bible)
    x_xlm, x_xl, langs, real = batches(vocab, rows, lang2id, items)
    other = {"en": "fr", "fr": "en"}
    targets = [(other[lang], bible[other[lang]][i % N_SENTENCES]) for i, (lang, _) in enumerate(items)]
    y_xlm, y_xl, tlangs, treal = batches(vocab, rows, lang2id, targets)
    y_xlm, y_xl, tlangs, treal = y_xlm[:, :-1], y_xl[:, :-1], tlangs[:, :-1], treal[:, 1:]  # inputs: </s> y
    p = ckpt["params"]
    enc_ref = hf_xlm(ckpt["encoder"], p)
    with torch.no_grad():
        ref_enc = enc_ref(input_ids=x_xlm, langs=langs, attention_mask=real.long(), output_hidden_states=True)
        memory = model.encode(x_xl, langs=langs)
        enc_diff = float((memory - ref_enc.hidden_states[-1])[real].abs().max())
        assert compare_logprobs(model.encoder.lm_logits(memory), ref_enc.logits, rows, real) < TOL
        diffs = []
        for tl in (0, 1):  # MASS decodes one target language per batch
            sel = tlangs[:, 0] == tl
            src_len = real[sel].sum(1)
            S = int(src_len.max())  # XLM's batches are as long as their longest sentence
            ref_mem = mass_forward(ckpt["encoder"], p, x_xlm[sel][:, :S], src_len, langs[sel][:, :S], causal=False)
            h_ref = mass_forward(ckpt["decoder"], p, y_xlm[sel], treal[sel].sum(1), tlangs[sel], causal=True,
                                 src_enc=ref_mem, src_len=src_len, n_layers=p["n_dec_layers"])
            h = model.decode(y_xl[sel], memory[sel], x_xl[sel] != 0, langs=tlangs[sel])
            diffs.append(compare_logprobs(model.lm_logits(h), mass_scores(ckpt["decoder"], h_ref), rows, treal[sel]))
    print(f"{kind}: encoder hidden max|diff| {enc_diff:.2e}, decoder log-prob max|diff| {max(diffs):.2e}")
    assert enc_diff < TOL and max(diffs) < TOL


def test_mass_translate_greedy_matches_mass_generate(converted, bible, tmp_path):
    """``xling translate`` (greedy, at most 8 tokens) prints what MASS's greedy ``generate``
    produces from the same sources, en->fr and fr->en."""
    ckpt, rec, out = converted["mass"]
    vocab = Vocab.load(out)
    _, rows, _ = vocab_rows(rec["words"])
    to_xling = {r: i for i, r in enumerate(rows) if i != 2}  # XLM row -> xling id (</s> -> xling's </s>)
    lang2id = ckpt["params"]["lang2id"]
    seen = set()
    for src, tgt in (("en", "fr"), ("fr", "en")):
        texts = bible[src][-N_SENTENCES:]
        (tmp_path / f"in.{src}").write_text("\n".join(texts) + "\n", encoding="utf-8")
        assert main(["translate", "--model", str(out), "--src-lang", src, "--tgt-lang", tgt, "--beam", "1",
                     "--max-len-a", "0", "--max-len-b", "8", "--min-len", "0", "--quiet",
                     "--input", str(tmp_path / f"in.{src}"), "--output", str(tmp_path / f"out.{tgt}")]) == 0
        got = (tmp_path / f"out.{tgt}").read_text(encoding="utf-8").splitlines()
        want = []
        for text in texts:
            ids = mass_greedy(ckpt, [rows[i] for i in vocab.encode(text, src)], lang2id[src], lang2id[tgt], 8)
            want.append(vocab.decode([to_xling[r] for r in ids]))
        assert got == want
        seen.update(got)
    assert len(seen) > 5  # not one constant output: the sources matter


# ----------------------------------------------------------------------------- files and options


def test_converted_directory(converted):
    """vocab.json names the backend and the steps; the BPE files are in checksums.json; a
    vocabulary saved and loaded again is the same; the model directory records its origin."""
    import json

    out = converted["mass"][2]
    meta = json.loads((out / "vocab.json").read_text())
    assert meta["backend"] == "bpe" and meta["normalize"] == [
        "moses_unicode_punct", "moses_punct", "nonprint", "moses_tokenize", "lowercase_accents"]
    sums = json.loads((out / "checksums.json").read_text())
    assert {"bpe.codes", "bpe.tokens", "vocab.json", "config.json", "model.safetensors"} <= set(sums)
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["converted"]["from"] == "mass"
    assert config["config"]["cross_out_per_lang"] is True
    vocab = Vocab.load(out)
    assert vocab.id_to_piece(5) == "<xlm:s>" and vocab.control == 15
    assert vocab.decode(vocab.encode("And God said", "en")) == "and god said"


def test_legacy_and_zip_files_convert_alike(tmp_path):
    """Released XLM files predate torch's zip format; both formats read the same."""
    from safetensors.torch import load_file

    outs = []
    for legacy in (True, False):
        rec = write_xlm_model(tmp_path / str(legacy), legacy_format=legacy, d_model=16, layers=1)
        assert main(["convert", "xlm", "--input", str(rec["checkpoint"]), "--codes", str(rec["codes"]),
                     "--out", str(tmp_path / f"out{legacy}")]) == 0
        outs.append(load_file(tmp_path / f"out{legacy}" / "model.safetensors"))
    assert outs[0].keys() == outs[1].keys() and all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_options_lowercase_and_langs(tmp_path):
    rec = write_xlm_model(tmp_path / "m", d_model=16, layers=1, lower=False)
    assert main(["convert", "xlm", "--input", str(rec["checkpoint"]), "--codes", str(rec["codes"]),
                 "--out", str(tmp_path / "auto")]) == 0
    assert "lowercase_accents" not in Vocab.load(tmp_path / "auto").meta["normalize"]  # a cased dictionary
    assert main(["convert", "xlm", "--input", str(rec["checkpoint"]), "--codes", str(rec["codes"]),
                 "--out", str(tmp_path / "yes"), "--lowercase", "yes", "--langs", "de,es"]) == 0
    vocab = Vocab.load(tmp_path / "yes")
    assert vocab.meta["normalize"][-1] == "lowercase_accents" and vocab.languages == ["de", "es"]
    assert main(["convert", "xlm", "--input", str(rec["checkpoint"]), "--codes", str(rec["codes"]),
                 "--out", str(tmp_path / "no"), "--langs", "de"]) == 2
    assert not (tmp_path / "no").exists()


def test_hidden_states_do_not_depend_on_the_batch(converted, bible):
    """Padding never reaches a real token: a verse alone gives the states it gets in the batch."""
    ckpt, rec, out = converted["mlm"]
    model = TransformerEncoder.from_pretrained(out).eval()
    vocab = Vocab.load(out)
    _, rows, _ = vocab_rows(rec["words"])
    _, xl, langs, real = batches(vocab, rows, ckpt["params"]["lang2id"], sentences(bible))
    with torch.no_grad():
        full = model(xl, langs=langs)
        one = model(xl[:1, : int(real[0].sum())], langs=langs[:1, : int(real[0].sum())])
    np.testing.assert_allclose(full[0, : one.shape[1]].numpy(), one[0].numpy(), atol=1e-5)


def test_a_converted_mass_model_is_not_exported_to_fairseq(converted, tmp_path, capsys):
    """Its vocabulary is BPE codes, not the SentencePiece model the fairseq export writes: one line."""
    rc = main(["convert", "to-fairseq", "--input", str(converted["mass"][2]), "--out", str(tmp_path / "fs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "not SentencePiece (bpe backend" in err[0], err
    assert not (tmp_path / "fs").exists()
