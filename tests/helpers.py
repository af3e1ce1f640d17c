"""Helpers shared by test modules in different folders (shared fixtures are in conftest.py).

Test modules import them by name (``from helpers import FakeEncoder``): tests/ is on
``sys.path`` because conftest.py lives there.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import subprocess
from pathlib import Path

import numpy as np

from xling.data.debian import APT_HELPER
from xling.errors import XlingError

# ----------------------------------------------------------------------------- tiny vocabularies and models
# Words of the two vocabularies of the ``vocabs`` fixture (conftest.py), and the sizes of the tiny
# models built on them (checksums of model directories, truncation by commands).

WORDS = {"en": ["the", "old", "man", "reads", "a", "book", "today", "river"],
         "de": ["der", "alte", "Mann", "liest", "ein", "Buch", "heute", "Fluss"]}
TINY = dict(d_model=32, n_layers=1, n_heads=4, d_ff=64, max_positions=64, dropout=0.0, attn_dropout=0.0)


# ----------------------------------------------------------------------------- Debian translation indexes
# A few entries in the exact published format, written by ``write_lists`` (the Debian corpus
# tests, and the bad-input table's ``corpus debian-descriptions`` row).

HAVE_LZ4 = bool(shutil.which("lz4")) and Path(APT_HELPER).is_file()
PREFIX = "deb.example.org_debian_dists_stable_main_i18n_Translation-"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def entry(package: str, md5_: str, lang: str, synopsis: str, body: str = "") -> str:
    """One index entry; ``body`` lines are indented by one space as apt stores them."""
    long = "".join(f" {line}\n" for line in body.splitlines())
    return f"Package: {package}\nDescription-md5: {md5_}\nDescription-{lang}: {synopsis}\n{long}\n"


A, B, SHORT, EMPTY, LONG, DE_ONLY = (md5(x) for x in ("A", "B", "short", "empty", "long", "de-only"))
A_EN = "Real-time strategy game of ancient warfare\n0 A.D. is a free, open-source, cross-platform\nreal-time strategy game.\n.\nThis package contains   the data files.\n   * maps\n   * sounds"
A_DE = "Echtzeit-Strategiespiel über antike Kriegsführung\n0 A.D. ist ein freies, quelloffenes\nEchtzeit-Strategiespiel.\n.\nDieses Paket enthält die Datendateien."
A_FR = "Jeu de stratégie en temps réel\n0 A.D. est un jeu libre et multiplateforme.\n.\nCe paquet contient les données."
A_ZH = "即时战略游戏\n0 A.D. 是一个免费、开源、跨平台的即时战略游戏。"
B_EN = "Tools for managing packages\nThese tools help to manage Debian packages\nand their dependencies."
B_DE = "Werkzeuge zur Paketverwaltung\nDiese Werkzeuge helfen bei der Verwaltung von Debian-Paketen."
GEN = [md5(f"gen{i}") for i in range(300)]


def _en_text() -> str:
    parts = [
        entry("0ad-data", A, "en", *A_EN.split("\n", 1)),
        entry("apt-tools", B, "en", *B_EN.split("\n", 1)),
        entry("0ad-data-common", A, "en", *A_EN.split("\n", 1)),  # same md5: one description, two packages
        entry("tiny", SHORT, "en", "A tiny package", "Tiny stuff."),  # 2 words: dropped as short
        entry("nolong", EMPTY, "en", "Only a synopsis"),  # no long description: dropped as empty
        entry("huge", LONG, "en", "A very long one", " ".join(["word"] * 60)),  # dropped with max_words=50
    ]
    parts += [entry(f"gen{i:03d}", m, "en", f"generated package {i}", f"Generated description number {i} for testing.") for i, m in enumerate(GEN)]
    return "".join(parts)


def _de_text() -> str:
    parts = [
        entry("0ad-data", A, "de", *A_DE.split("\n", 1)),
        entry("0ad-data-common", A, "de", *A_DE.split("\n", 1)),
        entry("apt-tools", B, "de", *B_DE.split("\n", 1)),
        entry("nur-deutsch", DE_ONLY, "de", "Nur deutsch", "Diese Beschreibung gibt es nur auf Deutsch."),
    ]
    parts += [entry(f"gen{i:03d}", m, "de", f"erzeugtes Paket {i}", f"Erzeugte Beschreibung Nummer {i} zum Testen.") for i, m in enumerate(GEN) if i % 2 == 0]
    return "".join(parts)


def write_lists(root: Path, en_lz4: bool = HAVE_LZ4) -> Path:
    lists = root / "lists"
    lists.mkdir(parents=True)
    en = lists / f"{PREFIX}en"
    en.write_text(_en_text(), encoding="utf-8")
    if en_lz4:
        subprocess.run(["lz4", "-q", "--rm", str(en), str(en) + ".lz4"], check=True)
    # a second suite repeating B with the same text
    (lists / "deb.example.org_debian-security_dists_stable-security_main_i18n_Translation-en").write_text(
        entry("apt-tools", B, "en", *B_EN.split("\n", 1)), encoding="utf-8"
    )
    with gzip.open(lists / f"{PREFIX}de.gz", "wt", encoding="utf-8") as f:
        f.write(_de_text())
    with lzma.open(lists / f"{PREFIX}fr.xz", "wt", encoding="utf-8") as f:
        f.write(entry("0ad-data", A, "fr", *A_FR.split("\n", 1)))
    (lists / f"{PREFIX}zh%5fCN").write_text(entry("0ad-data", A, "zh_CN", *A_ZH.split("\n", 1)), encoding="utf-8")
    (lists / "deb.example.org_debian_dists_stable_main_binary-amd64_Packages").write_text("Package: x\n\n")
    return lists


# ----------------------------------------------------------------------------- sentence encoders
# Stand-ins for a trained model in ``xling mine --model`` / ``xling evaluate mining``.


class FakeEncoder:
    """Stands in for xling.embeddings.SentenceEncoder: a vector per text from its number."""

    dim = 8

    @classmethod
    def from_pretrained(cls, model_dir):
        return cls()

    def check_lang(self, lang):
        if lang not in ("de", "en"):
            raise XlingError(f"unknown language {lang!r}")

    def encode(self, texts, lang, batch_size=64, normalize=True, truncation=None):
        self.check_lang(lang)
        out = np.stack([np.random.default_rng(int(t.split()[-1])).normal(size=self.dim) for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


# ----------------------------------------------------------------------------- `xling convert`
# No format is registered yet: tests register this probe (monkeypatch) to drive the command through
# its shared parts: the FORMAT sub-command, --input read by the safe pickle loader, --out written whole.


def probe_converter():
    """A test-only ``xling convert probe --input CKPT.pt --out DIR``: the names and shapes of the
    checkpoint's ``model`` tensors, written to DIR/tensors.json."""
    from xling.convert.registry import Converter

    def run(args) -> int:
        from xling.convert.pickles import load_checkpoint_pickle
        from xling.utils.io import atomic_dir, write_json_atomic

        model = load_checkpoint_pickle(args.input).get("model")
        if not isinstance(model, dict):
            raise XlingError(f"{args.input}: no 'model' state dict")
        with atomic_dir(args.out) as tmp:
            write_json_atomic(tmp / "tensors.json", {k: list(v.shape) for k, v in model.items()})
        return 0

    return Converter(name="probe", help="test only: the tensor shapes of a fairseq-style checkpoint", run=run)


def write_checkpoint(path: Path) -> Path:
    """A fairseq-style checkpoint pickle: ``args`` (an argparse.Namespace) and a ``model`` state dict."""
    import argparse

    import torch

    torch.save({"args": argparse.Namespace(arch="transformer", encoder_embed_dim=4),
                "model": {"encoder.embed_tokens.weight": torch.zeros(8, 4)}, "extra_state": {}}, path)
    return path


FAIRSEQ_TEXTS = ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void.",
                 "Au commencement, Dieu créa les cieux et la terre.", "La terre était informe et vide."] * 20


def write_fairseq_model(d: Path, seed: int = 0, d_model: int = 16, layers: int = 2, ffn: int = 32, heads: int = 2,
                        **args) -> dict[str, Path]:
    """A random fairseq ``transformer`` translation model laid out as fairseq 0.12 writes it:
    ``checkpoint.pt`` (``args`` Namespace, ``model`` state dict with fairseq's parameter names,
    ``optimizer_history``, ``extra_state``), ``dict.txt`` (tokens of a SentencePiece model trained
    the default way, madeupword padding) and ``spm.model``; all embeddings shared, post-norm,
    sinusoidal positions unless ``args`` says otherwise. Its numerics are checked against real
    fairseq in the side-venv parity tests; here it feeds format and bad-input tests."""
    import argparse
    import io

    import sentencepiece as spm
    import torch

    from xling.convert.fairseq_dict import FairseqDict

    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(FAIRSEQ_TEXTS), model_writer=buf, vocab_size=50,
                                   character_coverage=1.0)
    (d / "spm.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    fdict = FairseqDict.from_tokens([sp.id_to_piece(i) for i in range(3, sp.get_piece_size())], padding_factor=8)
    fdict.save(d / "dict.txt")
    a = dict(arch="transformer", encoder_embed_dim=d_model, encoder_ffn_embed_dim=ffn, encoder_layers=layers,
             encoder_attention_heads=heads, decoder_embed_dim=d_model, decoder_ffn_embed_dim=ffn,
             decoder_layers=layers, decoder_attention_heads=heads, share_all_embeddings=True,
             share_decoder_input_output_embed=True, max_source_positions=64, max_target_positions=64, dropout=0.1)
    a.update(args)
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g) * 0.2

    state: dict = {"encoder.embed_tokens.weight": rnd(len(fdict), d_model)}
    state["decoder.embed_tokens.weight"] = state["encoder.embed_tokens.weight"]
    state["decoder.output_projection.weight"] = state["encoder.embed_tokens.weight"]
    for side in ("encoder", "decoder"):
        state[f"{side}.version"] = torch.tensor([3.0])
        state[f"{side}.embed_positions._float_tensor"] = torch.zeros(1)  # what fairseq saves: a dtype holder
        for i in range(layers):
            kinds = ("self_attn", "encoder_attn") if side == "decoder" else ("self_attn",)
            for att in kinds:
                for p in ("q", "k", "v", "out"):
                    state[f"{side}.layers.{i}.{att}.{p}_proj.weight"] = rnd(d_model, d_model)
                    state[f"{side}.layers.{i}.{att}.{p}_proj.bias"] = rnd(d_model)
                state[f"{side}.layers.{i}.{att}_layer_norm.weight"] = 1 + rnd(d_model)
                state[f"{side}.layers.{i}.{att}_layer_norm.bias"] = rnd(d_model)
            state[f"{side}.layers.{i}.fc1.weight"], state[f"{side}.layers.{i}.fc1.bias"] = rnd(ffn, d_model), rnd(ffn)
            state[f"{side}.layers.{i}.fc2.weight"], state[f"{side}.layers.{i}.fc2.bias"] = rnd(d_model, ffn), rnd(d_model)
            state[f"{side}.layers.{i}.final_layer_norm.weight"] = 1 + rnd(d_model)
            state[f"{side}.layers.{i}.final_layer_norm.bias"] = rnd(d_model)
        if a.get("encoder_normalize_before"):
            state[f"{side}.layer_norm.weight"], state[f"{side}.layer_norm.bias"] = 1 + rnd(d_model), rnd(d_model)
    torch.save({"args": argparse.Namespace(**a), "model": state, "extra_state": {"epoch": 1},
                "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion",
                                       "optimizer_name": "Adam", "lr_scheduler_state": {}, "num_updates": 0}],
                "last_optimizer_state": None}, d / "checkpoint.pt")
    return {"checkpoint": d / "checkpoint.pt", "dict": d / "dict.txt", "spm": d / "spm.model"}
