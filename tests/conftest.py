"""Shared test fixtures: a small workspace with one model of every kind xling loads.

``workspace`` (session-scoped) builds, in a few seconds, from the Bible fixture database:
a corpus (en, fr, the en-fr pair, genre labels), a shared vocabulary, and untrained (random)
models of each kind: an XLM encoder, an encoder-decoder, a sentence embedder and a genre
classifier fine-tuned for two steps. Tests that need a model to *run* (bad-input tables,
CLI plumbing) use these; tests that need a model to *learn* train their own.

Test modules live in folders that mirror the package (tests/training/ tests xling/training/);
this conftest applies to all of them and puts tests/ on ``sys.path``, so they import its
constants (``from conftest import FIXTURE_DB``) and the helpers shared across folders
(``from helpers import ...``). Also here: ``tiny()`` (a tiny encoder or encoder-decoder),
``vocabs`` (two small en/de vocabularies) and ``one_thread``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
FIXTURE_DB = FIXTURES / "bible_mini.db"
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"
FAIRSEQ_ENV = ROOT / "scripts" / "fairseq_env.sh"


@dataclass(frozen=True)
class Workspace:
    root: Path
    corpus: Path  # Bible corpus: en, fr, en-fr, genre labels
    vocab: Path
    xlm: Path  # TransformerEncoder (model_type encoder)
    s2s: Path  # TransformerSeq2Seq: translate / generate
    laser: Path  # sentence embedder: embed / mine / evaluate mining
    classifier: Path  # fine-tuned genre classifier (classify predict / evaluate classification)
    classify_config: Path  # YAML for `xling classify train` (2 steps)
    train_config: Path  # YAML for `xling train` (2 steps)


def _yaml(path: Path, data: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Workspace:
    import torch
    import yaml

    from xling.cli import main
    from xling.classification.train import ClassifyConfig, run_classification
    from xling.config import from_dict
    from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig, SentenceEncoder
    from xling.models.config import EncoderConfig, Seq2SeqConfig
    from xling.models.encoder import TransformerEncoder
    from xling.models.seq2seq import TransformerSeq2Seq
    from xling.tokenization.vocab import Vocab

    d = tmp_path_factory.mktemp("workspace")
    assert main(["corpus", "bible", "--langs", "en,fr", "--db", str(FIXTURE_DB), "--out", str(d / "corpus"),
                 "--quiet"]) == 0
    assert main(["vocab", "--corpus", str(d / "corpus"), "--size", "400", "--out", str(d / "vocab")]) == 0
    vocab = Vocab.load(d / "vocab")
    sizes = dict(vocab_size=len(vocab), n_langs=len(vocab.languages), d_model=32, n_layers=1, n_heads=4, d_ff=64,
                 max_positions=128, dropout=0.0, attn_dropout=0.0)
    torch.manual_seed(0)
    TransformerEncoder(EncoderConfig(**sizes)).save_pretrained(d / "xlm", vocab=vocab)
    TransformerSeq2Seq(Seq2SeqConfig(**sizes, n_dec_layers=1)).save_pretrained(d / "s2s", vocab=vocab)
    emb = SentenceEmbedder(SentenceEmbedderConfig(vocab_size=len(vocab), n_langs=len(vocab.languages), emb_dim=32,
                                                  hidden=16, n_layers=1, dec_emb_dim=32, dec_hidden=32, dropout=0.0))
    SentenceEncoder(emb, vocab, ["en", "fr"], ["en"], max_len=40).save_pretrained(d / "laser")
    classify = {
        "method": "finetune", "init": str(d / "xlm"),
        "train": {"format": "bible", "path": str(d / "corpus"), "split": "train", "langs": ["en"]},
        "data": {"max_len": 32, "max_tokens": 512},
        "trainer": {"lr": 1e-3, "warmup_steps": 1, "max_steps": 2, "log_every": 1, "valid_every": 0,
                    "save_every": 2, "progress": False},
    }
    run_classification(from_dict(ClassifyConfig, classify), d / "classify_run", progress=False)
    train = yaml.safe_load(TINY_CONFIG.read_text(encoding="utf-8"))
    train["data"].update(corpus=str(d / "corpus"), vocab=str(d / "vocab"))
    train["trainer"].update(max_steps=2, valid_every=2, save_every=2)
    return Workspace(root=d, corpus=d / "corpus", vocab=d / "vocab", xlm=d / "xlm", s2s=d / "s2s",
                     laser=d / "laser", classifier=d / "classify_run" / "model",
                     classify_config=_yaml(d / "classify.yaml", classify), train_config=_yaml(d / "train.yaml", train))


TINY_SIZES = dict(vocab_size=100, n_langs=3, d_model=32, n_layers=2, n_heads=4, max_positions=32)


def tiny(pre_norm=True, seed=0, n_dec_layers=None, **kw):
    """A tiny model in eval mode, its weights drawn after ``torch.manual_seed(seed)``: a
    TransformerEncoder, or a TransformerSeq2Seq with ``n_dec_layers`` decoder layers.
    Sizes are :data:`TINY_SIZES` with ``d_ff = 2 * d_model``; ``kw`` overrides config fields."""
    import torch

    from xling.models.config import EncoderConfig, Seq2SeqConfig
    from xling.models.encoder import TransformerEncoder
    from xling.models.seq2seq import TransformerSeq2Seq

    cfg = {**TINY_SIZES, "pre_norm": pre_norm, **kw}
    cfg.setdefault("d_ff", 2 * cfg["d_model"])
    torch.manual_seed(seed)
    if n_dec_layers is None:
        return TransformerEncoder(EncoderConfig(**cfg)).eval()
    return TransformerSeq2Seq(Seq2SeqConfig(**cfg, n_dec_layers=n_dec_layers)).eval()


@pytest.fixture(scope="module")
def vocabs(tmp_path_factory):
    """Two small vocabularies (299 and 295 pieces) of the same en/de sentences
    (:data:`helpers.WORDS`): one for the models, the other to swap in as a wrong one."""
    import itertools

    from helpers import WORDS
    from xling.tokenization.vocab import train_vocab

    d = tmp_path_factory.mktemp("vocab")
    texts = {lang: [" ".join(p) for p in itertools.permutations(w, 4)][:300] for lang, w in WORDS.items()}
    return (train_vocab(texts, d / "a", vocab_size=299, max_sentences=600),
            train_vocab(texts, d / "b", vocab_size=295, max_sentences=600))


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny matrices and models gain nothing from more
    threads, which only add contention (spinning) on a busy machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- the fairseq side venv (issue 15)
# The reference code that needs fairseq (fairseq itself, laser_encoders) runs in a side venv that
# `make fairseq-venv` builds once per machine ($XLING_CACHE/fairseq-venv); tests run scripts in it
# and read what they print or write. This process never imports fairseq nor unpickles its files.


def xling_cache() -> Path:
    return Path(os.environ.get("XLING_CACHE") or Path.home() / ".cache" / "xling")


@contextmanager
def file_lock(path: Path):
    """One builder at a time (several pytest runs on one machine share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def side_env() -> dict[str, str]:
    return dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1")


@pytest.fixture(scope="session")
def fairseq_python() -> Path:
    """The side venv's python, built by `make fairseq-venv` if it is not there yet."""
    with file_lock(xling_cache() / "fairseq-venv.lock"):
        proc = subprocess.run(["make", "-s", "-C", str(ROOT), "fairseq-venv"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(
            f"`make fairseq-venv` failed (exit {proc.returncode}); its output ends with:\n"
            + (proc.stdout + proc.stderr)[-6000:],
            pytrace=False,
        )
    check = subprocess.run(["sh", str(FAIRSEQ_ENV), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    python = Path(check.stdout.strip())
    assert python.exists(), f"{python}: missing after `make fairseq-venv`"
    return python


def side_run(python: Path, code: str, *args: str) -> dict:
    """Runs `code` in the side venv; its last stdout line is JSON."""
    proc = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, env=side_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- Hugging Face encoders (issue 16)


@dataclass(frozen=True)
class HFModels:
    st_bert: Path  # sentence-transformers: tiny random BERT, mean pooling, Normalize; declares no language
    st_xlmr: Path  # sentence-transformers: tiny random XLM-R, CLS pooling, not normalised; model card: en, fr
    bert: Path  # the BERT alone, as transformers saves it (config.json, model.safetensors, tokenizer)


@pytest.fixture(scope="session")
def hf_models(workspace, tmp_path_factory) -> HFModels:
    """Tiny random BERT and XLM-R encoders (hidden 32, 2 layers) with tokenizers trained by the
    ``tokenizers`` library on the workspace's en + fr training text (WordPiece for BERT, Unigram
    for XLM-R), saved as sentence-transformers and plain transformers directories (under a second)."""
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerModelCardData
    from sentence_transformers.sentence_transformer import modules as stm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast, XLMRobertaConfig, XLMRobertaModel
    from transformers import XLMRobertaTokenizerFast

    d = tmp_path_factory.mktemp("hf")
    texts = [t for lang in ("en", "fr") for t in (workspace.corpus / f"train.{lang}").read_text("utf-8").splitlines()]
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)

    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer, wp.pre_tokenizer, wp.decoder = normalizers.BertNormalizer(), pre_tokenizers.BertPreTokenizer(), decoders.WordPiece()
    wp.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    wp.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", wp.token_to_id("[CLS]")), ("[SEP]", wp.token_to_id("[SEP]"))])
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=wp.get_vocab_size(), max_position_embeddings=64, **sizes),
              add_pooling_layer=False).save_pretrained(d / "bert")
    BertTokenizerFast(tokenizer_object=wp, model_max_length=64).save_pretrained(d / "bert")

    ug = Tokenizer(models.Unigram())
    ug.normalizer, ug.pre_tokenizer, ug.decoder = normalizers.NFKC(), pre_tokenizers.Metaspace(), decoders.Metaspace()
    ug.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=300, unk_token="<unk>",
                                                          special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
    ug.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    torch.manual_seed(1)
    XLMRobertaModel(XLMRobertaConfig(vocab_size=ug.get_vocab_size(), max_position_embeddings=50, pad_token_id=1,
                                     **sizes), add_pooling_layer=False).save_pretrained(d / "xlmr")
    XLMRobertaTokenizerFast(tokenizer_object=ug, model_max_length=48).save_pretrained(d / "xlmr")

    for name, pooling, tail, langs in (("bert", "mean", [stm.Normalize()], None), ("xlmr", "cls", [], ["en", "fr"])):
        tr = stm.Transformer(str(d / name))
        SentenceTransformer(modules=[tr, stm.Pooling(tr.get_embedding_dimension(), pooling), *tail], device="cpu",
                            model_card_data=SentenceTransformerModelCardData(language=langs)).save(str(d / f"st_{name}"))
    return HFModels(st_bert=d / "st_bert", st_xlmr=d / "st_xlmr", bert=d / "bert")


def side_reference(python: Path, script: Path, name: str, digest, *args: str) -> Path:
    """What ``script`` (run once with the side venv's ``python`` and ``--out DIR args``) wrote, cached in
    ``$XLING_CACHE/<name>/<key>``: the key hashes ``digest`` (a hashlib object over the script's
    inputs) with the side venv's build stamps, so a changed script, input or venv builds it again."""
    import shutil

    digest.update(str(sorted(p.name for p in python.parent.parent.glob(".built-*"))).encode())
    out = xling_cache() / name / digest.hexdigest()[:16]
    with file_lock(xling_cache() / f"{name}.lock"):
        if not (out / "manifest.json").exists():
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            proc = subprocess.run([str(python), str(script), *args, "--out", str(tmp)], capture_output=True,
                                  text=True, env=side_env())
            if proc.returncode != 0:
                pytest.fail(f"{script.name} failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}", pytrace=False)
            shutil.rmtree(out, ignore_errors=True)
            os.rename(tmp, out)
    return out
