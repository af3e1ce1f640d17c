"""Tiny LASER2 and LASER3 encoders made with laser_encoders' own classes, and what it computes (issue 15).

Run with the fairseq SIDE venv's python (`make fairseq-venv` installs laser_encoders 0.0.2 there;
`scripts/fairseq_env.sh` prints its path), never with xling's: laser_encoders imports fairseq.
It is the reference side of tests/convert/test_laser_reference.py.

    $(scripts/fairseq_env.sh) tests/fairseq_ref/make_laser.py --db tests/fixtures/bible_mini.db --out OUT

From the Bible verses of the fixture database (six translations: en x2, it, fr, ru, es, ar) it
trains two SentencePiece models (SentencePiece's defaults, as LASER's: nmt_nfkc, <unk>=0 <s>=1
</s>=2) on the verses as LaserTokenizer prepares them, and builds each one's dictionary with
fairseq's Dictionary from the segmented verses (counts, sorted, madeupword padding: the
`.cvocab` layout). The models are random: LaserLstmEncoder (LASER2) and fairseq's
TransformerEncoder (LASER3), saved as LASER's files are laid out and read back by
laser_encoders' SentenceEncoder, which computes the reference embeddings:

    OUT/sentences.json           the test sentences (several scripts, Moses-rewritten punctuation,
                                 upper case, control characters, one that normalises to nothing)
    OUT/laser2.spm .cvocab       SentencePiece unigram model + dictionary (shared by LASER2 and two LASER3s)
    OUT/laser3.spm .cvocab       a BPE model + dictionary (threshold 3: some pieces map to <unk>)
    OUT/<variant>/model.pt       laser2: {params, model, dictionary}; laser3_*: {cfg: {model: Namespace}, model}
    OUT/<variant>/ref.json       spm / cvocab file names, the token ids SentenceEncoder feeds the model
                                 (LaserTokenizer, then its dictionary: <s> 0, <pad> 1, </s> 2, <unk> 3)
    OUT/<variant>/single.npy     SentenceEncoder.encode_sentences, one sentence per batch (float32)
    OUT/<variant>/batched.npy    the same with batches of up to 8 (sorted by length, padded)
    OUT/manifest.json            variants and versions
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from argparse import Namespace
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # SentenceEncoder: torch.load(path), a Namespace inside

import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
from fairseq.data.dictionary import Dictionary  # noqa: E402
from fairseq.models.transformer import Embedding, TransformerEncoder  # noqa: E402
from fairseq.modules import LayerNorm  # noqa: E402
from laser_encoders.laser_tokenizer import LaserTokenizer  # noqa: E402
from laser_encoders.models import LaserLstmEncoder, SentenceEncoder  # noqa: E402

EXTRA = [
    "“Hello,” she said – it’s a ‘test’… isn’t it?",
    "„Anführungszeichen“ und ‚einfache‘ — Gedankenstrich; a‘b a’b ´quoted´ ´´x´´",
    "«\u00a0Bonjour\u00a0», dit-il\u00a0: «\u00a0ça va\u00a0?\u00a0» nº\u00a05, 50\u00a0% !",
    "THE LORD IS MY SHEPHERD; I SHALL NOT WANT.",
    "ÀÉÎÕÜ ÇA VA? ÑANDÚ Straße İstanbul",
    "tab\there, bell\x07 and zero\u200bwidth,\u2028line\u00a0sep",
    "Ελληνικά: Ἐν ἀρχῇ ἦν ὁ λόγος.",
    "中文句子，包含全角标点！（括号）",
    "emoji 😀 and symbols © ® ™ € £ ¥ § ¶",
    "Numbers: 1\u00a0000\u00a0000 and 3,14 and 2.718 (approx.) ; ok ?",
    "``Penn'' quotes and ''double'' marks, \"straight\", ones.",
    "\x07\x08",  # nothing left after the non-printing step: the model sees a lone </s> (or <s> </s>)
    "word",
]
LAYERS, DIM = 2, 16

# name -> (spm/cvocab pair, extra cfg["model"] fields, stored with a decoder?)
LASER3 = {
    # post-norm, sinusoidal, sqrt(d) scaling, x </s>, left padding, max pooling; a full fairseq model
    "laser3_max": ("laser2", dict(sentemb_criterion="maxpool", prepend_bos=False, left_pad_source=True), True),
    # pre-norm (final layer_norm, so <mask> joins the dictionary), learned positions, layernorm_embedding,
    # gelu, <s> x </s>, right padding, cls pooling; stored as laser_encoders keeps it (encoder keys only)
    "laser3_cls": ("laser3", dict(sentemb_criterion="cls", prepend_bos=True, left_pad_source=False,
                                  encoder_normalize_before=True, encoder_learned_pos=True, layernorm_embedding=True,
                                  activation_fn="gelu", max_source_positions=512), False),
    # post-norm layers with a final layer_norm anyway (laser_encoders adds it when the key is there),
    # no embedding scaling, <s> x </s> max-pooled
    "laser3_postln": ("laser2", dict(sentemb_criterion="maxpool", prepend_bos=True, left_pad_source=True,
                                     no_scale_embedding=True), True),
}


def verses(db: Path) -> tuple[list[str], list[str]]:
    """(training verses, test verses): the last three of each translation are the test ones."""
    con = sqlite3.connect(db)
    train, test = [], []
    for (name,) in con.execute("SELECT DISTINCT bbName FROM bible ORDER BY bbName"):
        rows = [r[0] for r in con.execute(
            "SELECT vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber", (name,))]
        train += rows[:-3]
        test += rows[-3:]
    return train, test


def make_vocab(out: Path, name: str, lines: list[str], model_type: str, size: int, threshold: int) -> None:
    """name.spm trained on the lower-cased lines; name.cvocab: fairseq's Dictionary of the
    segmented lines (LaserTokenizer's output), as fairseq-preprocess builds a dict.txt."""
    spm.SentencePieceTrainer.train(sentence_iterator=iter([s.lower() for s in lines]), model_prefix=str(out / name),
                                   model_type=model_type, vocab_size=size, character_coverage=1.0, minloglevel=2)
    (out / f"{name}.model").rename(out / f"{name}.spm")
    (out / f"{name}.vocab").unlink()
    tok = LaserTokenizer(spm_model=out / f"{name}.spm")
    d = Dictionary()
    for line in lines:
        for t in tok.tokenize(line).split():
            d.add_symbol(t)
    d.finalize(threshold=threshold, padding_factor=8)
    d.save(str(out / f"{name}.cvocab"))


def randomize_norms(module: torch.nn.Module, gen: torch.Generator) -> None:
    """LayerNorms start at 1 / 0; give them random values, so that every one counts."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))


def laser2_model(out: Path) -> None:
    d = Dictionary.load(str(out / "laser2.cvocab"))
    params = dict(num_embeddings=len(d), padding_idx=d.pad(), embed_dim=DIM, hidden_size=DIM, num_layers=LAYERS,
                  bidirectional=True, left_pad=True, padding_value=0.0)
    enc = LaserLstmEncoder(**params)
    torch.save({"params": params, "model": enc.state_dict(), "dictionary": dict(d.indices)}, out / "laser2" / "model.pt")


def laser3_model(out: Path, name: str, vocab: str, fields: dict, with_decoder: bool, gen: torch.Generator) -> None:
    cfg = Namespace(arch="laser_transformer", encoder_embed_dim=DIM, encoder_ffn_embed_dim=2 * DIM,
                    encoder_layers=LAYERS, encoder_attention_heads=4, dropout=0.1, attention_dropout=0.0,
                    **{"encoder_normalize_before": False, "encoder_learned_pos": False, "layernorm_embedding": False,
                       "activation_fn": "relu", "no_scale_embedding": False, "max_source_positions": 1024, **fields})
    d = Dictionary.load(str(out / f"{vocab}.cvocab"))
    final = cfg.encoder_normalize_before or name == "laser3_postln"
    if final:
        d.add_symbol("<mask>")
    enc = TransformerEncoder(cfg, d, Embedding(len(d), DIM, d.pad()))
    if final and enc.layer_norm is None:
        enc.layer_norm = LayerNorm(DIM)
    randomize_norms(enc, gen)
    sd = enc.state_dict()
    if with_decoder:  # a whole fairseq model: laser_encoders drops the decoder and strips "encoder."
        sd = {f"encoder.{k}": v for k, v in sd.items()}
        sd["decoder.embed_tokens.weight"] = torch.randn(len(d), DIM, generator=gen)
        sd["decoder.version"] = torch.tensor([3.0])
    torch.save({"cfg": {"model": cfg}, "model": sd}, out / name / "model.pt")


def reference(out: Path, name: str, vocab: str, sentences: list[str]) -> None:
    """What laser_encoders computes: LaserTokenizer, then SentenceEncoder.encode_sentences
    (LaserEncoderPipeline.encode_sentences without the download)."""
    tok = LaserTokenizer(spm_model=out / f"{vocab}.spm")
    pieces = [tok.tokenize(s) for s in sentences]
    model, cvocab = str(out / name / "model.pt"), str(out / f"{vocab}.cvocab")
    single = SentenceEncoder(model, spm_vocab=cvocab, max_sentences=1, cpu=True)
    batched = SentenceEncoder(model, spm_vocab=cvocab, max_sentences=8, max_tokens=4000, cpu=True)
    np.save(out / name / "single.npy", single.encode_sentences(pieces).astype(np.float32))
    np.save(out / name / "batched.npy", batched.encode_sentences(pieces).astype(np.float32))
    ref = {"spm": f"{vocab}.spm", "cvocab": f"{vocab}.cvocab", "pieces": pieces,
           "token_ids": [single._tokenize(p).tolist() for p in pieces]}
    (out / name / "ref.json").write_text(json.dumps(ref, ensure_ascii=False, indent=1), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, type=Path, help="the Bible fixture database")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(1)
    out = args.out
    train, test = verses(args.db)
    sentences = test + EXTRA + ["  " + " ".join(test[:4]) + "  "]  # and a long one, with outer spaces
    for name in ["laser2", *LASER3]:
        (out / name).mkdir(parents=True)
    (out / "sentences.json").write_text(json.dumps(sentences, ensure_ascii=False, indent=1), encoding="utf-8")
    make_vocab(out, "laser2", train, "unigram", 300, threshold=-1)
    make_vocab(out, "laser3", train, "bpe", 250, threshold=3)
    laser2_model(out)
    reference(out, "laser2", "laser2", sentences)
    for name, (vocab, fields, with_decoder) in LASER3.items():
        laser3_model(out, name, vocab, fields, with_decoder, gen)
        reference(out, name, vocab, sentences)
    manifest = {"variants": ["laser2", *LASER3], "sentences": len(sentences),
                **{p: version(p) for p in ("laser_encoders", "fairseq-fixed", "torch", "sacremoses", "sentencepiece")},
                "python": sys.version.split()[0]}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
