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


def stub_encoder(monkeypatch, cls) -> None:
    """Every encoder ``--model`` names is ``cls.from_pretrained(model)`` for the test (patches
    :func:`xling.embeddings.backends.load_encoder`, which mine, evaluate and classify call)."""
    import xling.embeddings.backends

    monkeypatch.setattr(xling.embeddings.backends, "load_encoder", lambda model, device="cpu": cls.from_pretrained(model))


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


# ----------------------------------------------------------------------------- original XLM / MASS checkpoints
# Tiny random checkpoints laid out as facebookresearch/XLM (``mlm_*.pth``) and microsoft/MASS
# (``mass_*.pth``) write them (``Trainer.save_checkpoint``), with fastBPE codes learned on the given
# text (xling convert xlm: tests/convert/test_xlm*.py, the bad-input table).

XLM_TEXTS = {"en": FAIRSEQ_TEXTS[0::2][:40], "fr": FAIRSEQ_TEXTS[1::2][:40]}  # FAIRSEQ_TEXTS alternates en, fr ...


def xlm_preprocess(text: str, lang: str, lower: bool = True) -> str:
    """XLM's tools/tokenize.sh (+ lowercase_and_remove_accent.py) with sacremoses, to learn codes on."""
    import unicodedata

    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    norm = MosesPunctNormalizer(lang=lang)
    text = norm.normalize(norm.replace_unicode_punct(text))
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = MosesTokenizer(lang=lang).tokenize(text, return_str=True, escape=False)
    if lower:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn").lower()
    return text


def learn_fastbpe_codes(lines: list[str], n_merges: int) -> str:
    """BPE codes learned by subword-nmt on tokenized ``lines``, written as fastBPE writes them:
    ``left right count`` (the pair's frequency when merged), no version header."""
    import contextlib
    import io
    import re

    from subword_nmt.learn_bpe import learn_bpe

    out, log = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(log):
        learn_bpe(lines, out, n_merges, min_frequency=2, verbose=True)
    merges = out.getvalue().splitlines()[1:]  # after "#version: 0.2"
    counts = [int(m) for m in re.findall(r"\(frequency (\d+)\)", log.getvalue())]
    assert len(counts) == len(merges)
    return "".join(f"{m} {c}\n" for m, c in zip(merges, counts))


def xlm_dictionary(segmented: list[str], max_words: int | None = None) -> tuple[list[str], dict[str, int]]:
    """XLM's dictionary of BPE-segmented lines: ``<s> </s> <pad> <unk> <special0..9>``, then the
    tokens by decreasing count (fastBPE getvocab + XLM's Dictionary.read_vocab), cut to ``max_words``;
    and the token counts."""
    from collections import Counter

    counts = Counter(t for line in segmented for t in line.split())
    words = [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))][:max_words]
    return ["<s>", "</s>", "<pad>", "<unk>", *(f"<special{i}>" for i in range(10)), *words], counts


def xlm_state(n_words: int, d: int, layers: int, n_langs: int, seed: int, decoder: bool = False,
              per_lang_out: bool = False, n_positions: int = 512) -> dict:
    """A random state dict with XLM's parameter names (xlm/model/transformer.py; MASS's decoder:
    ``encoder_attn.i.out_lin.{lang}``); pred_layer.proj tied to the embeddings, pad row zero."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=0.3):
        return torch.randn(*shape, generator=g) * scale

    def linear(name, n_out, n_in):
        s[f"{name}.weight"], s[f"{name}.bias"] = rnd(n_out, n_in, scale=n_in ** -0.5), rnd(n_out, scale=0.1)

    def norm(name):
        s[f"{name}.weight"], s[f"{name}.bias"] = 1 + rnd(d, scale=0.1), rnd(d, scale=0.1)

    s: dict = {"position_embeddings.weight": rnd(n_positions, d)}
    if n_langs > 1:
        s["lang_embeddings.weight"] = rnd(n_langs, d)
    s["embeddings.weight"] = rnd(n_words, d)
    s["embeddings.weight"][2] = 0.0  # XLM's Embedding(padding_idx=pad_index): a zero row, never trained
    norm("layer_norm_emb")
    for i in range(layers):
        for x in ("q", "k", "v", "out"):
            linear(f"attentions.{i}.{x}_lin", d, d)
        norm(f"layer_norm1.{i}")
        if decoder:
            norm(f"layer_norm15.{i}")
            for x in ("q", "k", "v"):
                linear(f"encoder_attn.{i}.{x}_lin", d, d)
            for name in ([f"encoder_attn.{i}.out_lin.{k}" for k in range(n_langs)] if per_lang_out
                         else [f"encoder_attn.{i}.out_lin"]):
                linear(name, d, d)
        linear(f"ffns.{i}.lin1", 4 * d, d)
        linear(f"ffns.{i}.lin2", d, 4 * d)
        norm(f"layer_norm2.{i}")
    s["pred_layer.proj.weight"] = s["embeddings.weight"]  # share_inout_emb: one tensor under both names
    s["pred_layer.proj.bias"] = rnd(n_words, scale=0.1)
    s["pred_layer.proj.bias"][2] = -5.0  # <pad>: trained models never predict it (xling's search bans it)
    return s


def write_xlm_model(d: Path, kind: str = "mlm", texts: dict[str, list[str]] | None = None, d_model: int = 32,
                    layers: int = 2, heads: int = 4, n_merges: int = 200, max_words: int | None = None,
                    seed: int = 0, lower: bool = True, legacy_format: bool = True) -> dict:
    """``kind`` "mlm": ``mlm_tiny.pth`` ({model, params, dico_*}, XLM's MLM trainer); "mass":
    ``mass_tiny.pth`` ({encoder, decoder, params, dico_*}, MASS's per-language cross-attention
    outputs); "mt": XLM's own encoder-decoder (one cross-attention output). Also ``codes`` (fastBPE
    codes learned on ``texts``, preprocessed as XLM does, lowercased when ``lower``). Saved in
    torch's pre-1.6 (non-zip) format as the released files are, unless ``legacy_format`` is off.
    Returns the paths, the dictionary, the word counts and the params."""
    import io

    import numpy as np
    import torch
    from subword_nmt.apply_bpe import BPE

    texts = texts or XLM_TEXTS
    langs = sorted(texts)
    d.mkdir(parents=True, exist_ok=True)
    tok = {lang: [xlm_preprocess(t, lang, lower) for t in texts[lang]] for lang in langs}
    codes = learn_fastbpe_codes([line for lang in langs for line in tok[lang]], n_merges)
    (d / "codes").write_text(codes, encoding="utf-8")
    bpe = BPE(io.StringIO("#version: 0.2\n" + "".join(" ".join(x.split()[:2]) + "\n" for x in codes.splitlines())))
    words, counts = xlm_dictionary([bpe.process_line(line) for lang in langs for line in tok[lang]], max_words)
    n_langs = len(langs)
    params = dict(
        dump_path=str(d), exp_name="tiny", exp_id="0", lgs="-".join(langs), langs=langs, n_langs=n_langs,
        id2lang=dict(enumerate(langs)), lang2id={lang: i for i, lang in enumerate(langs)},
        emb_dim=d_model, n_layers=layers, n_heads=heads, dropout=0.1, attention_dropout=0.1, gelu_activation=True,
        share_inout_emb=True, sinusoidal_embeddings=False, use_lang_emb=True, asm=False, asm_cutoffs="8000,20000",
        asm_div_value=4, use_memory=False, encoder_only=kind == "mlm", n_words=len(words), bos_index=0, eos_index=1,
        pad_index=2, unk_index=3, mask_index=5, word_mask_keep_rand="0.8,0.1,0.1", word_mask=0.8, word_keep=0.1,
        word_rand=0.1, sample_alpha=0.0, mask_scores=np.maximum(np.array([counts.get(w, 0) for w in words]), 1.0),
        pred_probs=torch.FloatTensor([0.8, 0.1, 0.1]), mlm_steps=[(lang, None) for lang in langs],
        mono_dataset={lang: {"train": f"train.{lang}.pth"} for lang in langs}, para_dataset={}, is_master=True,
        command="python train.py --exp_name tiny")
    meta = {"dico_id2word": dict(enumerate(words)), "dico_word2id": {w: i for i, w in enumerate(words)},
            "dico_counts": {w: counts.get(w, 0) for w in words}, "epoch": 1, "n_total_iter": 10}
    if kind == "mlm":
        ckpt = {"model": xlm_state(len(words), d_model, layers, n_langs, seed), "params": params, **meta}
    else:
        params.update(n_dec_layers=layers, attention_setting="v1", english_only=False, mass_steps=langs)
        ckpt = {"encoder": xlm_state(len(words), d_model, layers, n_langs, seed), **meta, "params": params,
                "decoder": xlm_state(len(words), d_model, layers, n_langs, seed + 1, decoder=True,
                                     per_lang_out=kind == "mass")}
    path = d / ("mlm_tiny.pth" if kind == "mlm" else f"{kind}_tiny.pth")
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy_format)
    return {"checkpoint": path, "codes": d / "codes", "words": words, "params": params}


def bible_texts(d: Path) -> dict[str, list[str]]:
    """Every verse of the fixture database's English and French Bibles (all splits)."""
    from xling.data.bible import build_bible_corpus

    root = Path(__file__).resolve().parent
    build_bible_corpus(["en", "fr"], d, db_path=root / "fixtures" / "bible_mini.db", progress=False)
    return {lang: [line for split in ("train", "valid", "test")
                   for line in (d / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()] for lang in ("en", "fr")}


def hf_xlm(state: dict, params: dict, lm: bool = True):
    """The reference: ``transformers``' XLMWithLMHeadModel (``lm``) or XLMModel configured from XLM's
    ``params`` and loaded, strictly, with an XLM state dict as transformers' own converter of the
    original checkpoints did (every name but pred_layer's prefixed ``transformer.``)."""
    from transformers import XLMConfig, XLMModel, XLMWithLMHeadModel

    cfg = XLMConfig(vocab_size=params["n_words"], emb_dim=params["emb_dim"], n_layers=params["n_layers"],
                    n_heads=params["n_heads"], dropout=params["dropout"], attention_dropout=params["attention_dropout"],
                    gelu_activation=params["gelu_activation"], sinusoidal_embeddings=params["sinusoidal_embeddings"],
                    asm=params["asm"], n_langs=params["n_langs"], use_lang_emb=params["use_lang_emb"],
                    max_position_embeddings=state["position_embeddings.weight"].shape[0], layer_norm_eps=1e-12,
                    causal=False, is_encoder=True, tie_word_embeddings=params["share_inout_emb"],
                    pad_token_id=params["pad_index"], bos_token_id=params["bos_index"],
                    eos_token_id=params["eos_index"], unk_index=params["unk_index"], mask_index=params["mask_index"])
    if lm:
        model = XLMWithLMHeadModel(cfg)
        model.load_state_dict({k if k.startswith("pred_layer") else f"transformer.{k}": v for k, v in state.items()},
                              strict=True)
    else:
        model = XLMModel(cfg)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("pred_layer")}, strict=True)
    return model.eval()


def hf_xlm_tokenizer(words: list[str], codes: Path, params: dict, lower: bool, d: Path):
    """The reference tokenizer: ``transformers``' XLMTokenizer built from XLM's dictionary and the
    fastBPE codes, its vocabulary made as transformers' converter made it (``@@`` stripped,
    ``</w>`` appended to word-final tokens)."""
    import json

    from transformers import XLMTokenizer

    d.mkdir(parents=True, exist_ok=True)
    vocab = {(w + "</w>" if "@@" not in w and i > 13 else w.replace("@@", "")): i for i, w in enumerate(words)}
    (d / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (d / "merges.txt").write_text(codes.read_text(encoding="utf-8"), encoding="utf-8")
    return XLMTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), do_lowercase_and_remove_accent=lower,
                        lang2id=params["lang2id"], id2lang=params["id2lang"])


def write_laser_model(d: Path, kind: str = "laser2", seed: int = 0) -> dict[str, Path]:
    """A random LASER encoder laid out as LASER's files are, with ``spm.model`` and ``dict.txt``
    (the ``.cvocab``) of :func:`write_fairseq_model`. ``laser2``: ``{params, model, dictionary}``
    (LaserLstmEncoder's arguments and parameter names, a 2-layer BiLSTM of 8 per direction);
    ``laser3``: ``{cfg: {model: Namespace}, model}``, that fairseq model's state (decoder
    included, which laser_encoders drops) with LASER3's cfg fields. Numerics are checked against
    laser_encoders itself in tests/convert/test_laser_reference.py; these feed format and
    bad-input tests."""
    import torch

    from xling.convert.fairseq_dict import FairseqDict

    files = write_fairseq_model(d / "fairseq", seed=seed)
    out = {"spm": files["spm"], "cvocab": files["dict"], "checkpoint": d / f"{kind}.pt"}
    if kind == "laser3":
        ck = torch.load(files["checkpoint"], weights_only=False)  # our own file, just written
        vars(ck["args"]).update(sentemb_criterion="maxpool", prepend_bos=False, left_pad_source=True)
        torch.save({"cfg": {"model": ck["args"]}, "model": ck["model"]}, out["checkpoint"])
        return out
    fdict = FairseqDict.load(files["dict"])
    torch.manual_seed(seed)
    params = dict(num_embeddings=len(fdict), padding_idx=1, embed_dim=8, hidden_size=8, num_layers=2,
                  bidirectional=True, left_pad=True, padding_value=0.0)
    lstm = torch.nn.LSTM(8, 8, num_layers=2, bidirectional=True)
    state = {"embed_tokens.weight": torch.randn(len(fdict), 8), **{f"lstm.{k}": v for k, v in lstm.state_dict().items()}}
    torch.save({"params": params, "model": state, "dictionary": {s: i for i, s in enumerate(fdict.symbols)}},
               out["checkpoint"])
    return out
