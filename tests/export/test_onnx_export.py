"""``xling export onnx`` (issue 16 part 4): onnxruntime against PyTorch within 1e-4 on padded
batches of other sizes and lengths than the traced one (BiLSTM and transformer embedders, every
pooling, language ids, LASER's layout options; frozen classifiers, single and pair), the onnx
encoder backend against xling's own encoder through ``xling embed``, the README's example run
without xling, int8 mining P@1 within 0.01 of float32 on a synthetic parallel set, and the
one-line errors (model kinds ONNX cannot take, missing packages, a changed file)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT
from synthetic import cipher_corpus
from xling.classification.data import Example
from xling.classification.model import EmbeddingClassifier, EmbeddingHeadConfig
from xling.classification.predict import Predictor
from xling.classification.train import save_classifier
from xling.cli import main
from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig, SentenceEncoder
from xling.embeddings.backends import load_encoder
from xling.embeddings.backends.onnx import OnnxEncoder, session
from xling.errors import XlingError
from xling.evaluation.signature import model_hash, short_hash
from xling.export.onnx import export_onnx
from xling.models.config import EncoderConfig
from xling.objectives.sentence import TranslationRankingObjective
from xling.tasks.sentence import p_at_1
from xling.tokenization.vocab import Vocab, train_vocab

TEXTS = ["In the beginning God created the heaven and the earth.", "", "And God said, Let there be light.",
         "Light.", "And the evening and the morning were the first day, " * 6, "   ", "Amen."]
LSTM = dict(emb_dim=16, hidden=8, n_layers=2)
EMBEDDERS = {  # name -> SentenceEmbedderConfig fields (sizes of a tiny model)
    "lstm-max": dict(LSTM, pooling="max"),
    "lstm-mean": dict(LSTM, n_layers=1, pooling="mean"),
    "transformer-mean-langs": dict(encoder="transformer", pooling="mean", src_lang_embedding=True),
    "transformer-cls": dict(encoder="transformer", pooling="cls"),
    "transformer-postnorm-laser": dict(encoder="transformer", pooling="max", source_bos=False, final_norm=True,
                                       pre_norm=False, decoder=False),
}


def _embedder(vocab: Vocab, seed: int = 0, pre_norm: bool = True, **kw) -> SentenceEmbedder:
    base = dict(vocab_size=len(vocab), n_langs=len(vocab.languages), dec_emb_dim=8, dec_hidden=8, dropout=0.0)
    if kw.get("encoder") == "transformer":
        base["transformer"] = EncoderConfig(vocab_size=len(vocab), n_langs=len(vocab.languages), d_model=16, n_layers=2,
                                            n_heads=2, d_ff=32, max_positions=48, dropout=0.0, attn_dropout=0.0,
                                            pre_norm=pre_norm)
    torch.manual_seed(seed)
    return SentenceEmbedder(SentenceEmbedderConfig(**{**base, **kw})).eval()


def _padded(rows: list[list[int]]) -> torch.Tensor:
    out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)  # (B, S), PAD = 0
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r)
    return out


def _batches(rng: np.random.Generator, vocab_size: int, max_row: int) -> list[torch.Tensor]:
    """Padded ``<s> x </s>`` batches of other sizes and lengths than the exporter's: one row, no
    padding; one row of <s> </s>; 4 rows from the shortest to the longest; 9 random lengths."""
    shapes = [[7], [2], [3, max_row, 2, 11], list(rng.integers(2, max_row + 1, 9))]
    return [_padded([[2, *rng.integers(5, vocab_size, n - 2), 3] for n in lengths]) for lengths in shapes]


@pytest.fixture(scope="module")
def vocab(workspace) -> Vocab:
    return Vocab.load(workspace.vocab)


@pytest.fixture(scope="module")
def laser_export(workspace, tmp_path_factory) -> Path:
    """The workspace's BiLSTM embedder exported by the command line."""
    out = tmp_path_factory.mktemp("export") / "laser_onnx"
    assert main(["export", "onnx", "--model", str(workspace.laser), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_onnxruntime_equals_pytorch(name, vocab, tmp_path, one_thread):
    kw = dict(EMBEDDERS[name])
    pre_norm = kw.pop("pre_norm", True)
    model = _embedder(vocab, pre_norm=pre_norm, **kw)
    SentenceEncoder(model, vocab, ["en", "fr"], max_len=30).save_pretrained(tmp_path / "model")
    cfg = export_onnx(tmp_path / "model", tmp_path / "onnx")
    assert cfg["check"]["max_abs_diff"] < 1e-4
    names = [i["name"] for i in cfg["inputs"]]
    assert names == (["tokens", "lang_ids"] if kw.get("src_lang_embedding") else ["tokens"])
    sess = session(tmp_path / "onnx" / "model.onnx", threads=1)
    rng = np.random.default_rng(0)
    for tokens in _batches(rng, len(vocab), 32):
        lang_ids = torch.from_numpy(rng.integers(0, 2, len(tokens)))  # (B,)
        with torch.no_grad():
            ref = model.embed(tokens, lang_ids[:, None].expand_as(tokens) if "lang_ids" in names else None).numpy()
        feeds = {"tokens": tokens.numpy(), "lang_ids": lang_ids.numpy()}
        got = sess.run(["embeddings"], {k: feeds[k] for k in names})[0]
        assert got.shape == ref.shape == (len(tokens), model.dim)
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)


def test_backend_embeds_as_the_xling_encoder_does(workspace, laser_export, tmp_path, capsys):
    # scores signed with an export name its files (their sha256 in the export record), not its path
    assert model_hash(laser_export) == short_hash((laser_export / "onnx_config.json").read_bytes())
    enc = load_encoder(laser_export)
    assert isinstance(enc, OnnxEncoder) and enc.languages == ["en", "fr"]
    ref = SentenceEncoder.from_pretrained(workspace.laser)
    np.testing.assert_allclose(enc.encode(TEXTS, "fr", normalize=True), ref.encode(TEXTS, "fr", normalize=True),
                               atol=1e-4, rtol=0)
    one = enc.encode(TEXTS, "en", batch_size=1)
    assert not one[1].any() and not one[5].any()  # empty texts: zero rows, in their places
    np.testing.assert_allclose(enc.encode(TEXTS[::-1], "en", batch_size=3)[::-1], one, atol=1e-5, rtol=0)
    with pytest.raises(XlingError, match="'de'.*known: en, fr"):
        enc.encode(TEXTS, "de")
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in TEXTS), encoding="utf-8")
    for model, out in ((workspace.laser, "ref.npy"), (laser_export, "onnx.npy")):
        assert main(["embed", "--model", str(model), "--lang", "en", "--input", str(tmp_path / "in.txt"),
                     "--out", str(tmp_path / out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("longer than") == 2, err  # the long line is cut to max_len, and said so, by both
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "ref.npy"), atol=1e-4, rtol=0)


def _frozen_classifier(workspace, dir: Path, pair: bool, hidden: int) -> Path:
    torch.manual_seed(1)
    head = EmbeddingClassifier(EmbeddingHeadConfig(dim=32, labels=["law", "gospel", "poetry"], pair=pair,
                                                   hidden=hidden, languages=["en", "fr"]))
    torch.nn.init.normal_(head.net[-1].bias)  # not the zero bias of a fresh layer
    return save_classifier(head, dir, {}, None, encoder_dir=str(workspace.laser))


@pytest.mark.parametrize("pair,hidden", [(False, 0), (True, 8)])
def test_frozen_classifier_logits_equal_the_predictor(pair, hidden, workspace, vocab, tmp_path):
    clf_dir = _frozen_classifier(workspace, tmp_path / "clf", pair, hidden)
    cfg = export_onnx(clf_dir, tmp_path / "onnx")
    assert cfg["kind"] == "frozen_classifier" and cfg["labels"] == ["law", "gospel", "poetry"]
    texts = [t for t in TEXTS if t.strip()]
    examples = [Example(t, "", "en", texts[-1 - i] if pair else None) for i, t in enumerate(texts)]
    ref = Predictor.load(clf_dir).logits_of(examples, "en")  # (N, C)

    def rows(xs):
        return _padded([[2, *ids[:40], 3] for ids in vocab.encode_batch(xs, lang="en")]).numpy()

    feeds = {"tokens": rows([x.text for x in examples])}
    if pair:
        feeds["tokens_b"] = rows([x.text_b for x in examples])
    got = session(tmp_path / "onnx" / "model.onnx").run(["logits"], feeds)[0]
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    with pytest.raises(XlingError, match="an exported frozen_classifier, not a sentence encoder"):
        load_encoder(tmp_path / "onnx")


def _readme_code(dir: Path) -> str:
    text = (dir / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    return re.sub(r'^MODEL = Path\(".*"\)', f"MODEL = Path({str(dir)!r})", code, count=1, flags=re.M)


def _run_without_xling(code: str, tail: str) -> dict:
    """``code`` then ``tail`` in a fresh interpreter where importing xling fails; ``tail`` prints JSON."""
    script = "import sys\nsys.modules['xling'] = None  # the example must not need xling\n" + code + "\n" + tail
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_readme_examples_run_with_onnxruntime_and_sentencepiece_only(workspace, laser_export, tmp_path):
    texts = [t for t in TEXTS if t.strip()]
    got = _run_without_xling(_readme_code(laser_export), f"import json; print(json.dumps(embed({texts!r}, 'fr').tolist()))")
    want = load_encoder(laser_export).encode(texts, "fr", normalize=True)
    np.testing.assert_allclose(np.array(got, dtype=np.float32), want, atol=1e-5, rtol=0)
    readme = (laser_export / "README.md").read_text(encoding="utf-8")
    for needle in ("| `tokens` | int64 | (batch, seq) |", "| `embeddings` | float32 | (batch, 32) |",
                   "`bos_id` = 2", "`eos_id` = 3", "`pad_id` = 0", "`max_len` = 40", "takes no language id"):
        assert needle in readme, needle

    clf_dir = _frozen_classifier(workspace, tmp_path / "clf", True, 0)
    export_onnx(clf_dir, tmp_path / "clf_onnx")
    got = _run_without_xling(_readme_code(tmp_path / "clf_onnx"),
                             f"import json; print(json.dumps(classify({texts!r}, {texts[::-1]!r}, 'en')[1].tolist()))")
    pairs = [Example(a, "", "en", b) for a, b in zip(texts, texts[::-1])]
    probs = torch.softmax(torch.from_numpy(Predictor.load(clf_dir).logits_of(pairs, "en")), -1).numpy()
    np.testing.assert_allclose(np.array(got, dtype=np.float32), probs, atol=1e-5, rtol=0)


def test_int8_keeps_mining_p_at_1_within_001(tmp_path, one_thread):
    """A BiLSTM trained for 15 steps (about 3 s) to match 500 synthetic sentences with their
    enciphered translations (tests/synthetic.py): P@1 of nearest-neighbour retrieval both ways,
    float32 export (about 0.95) against int8 (measured: equal)."""
    rng = np.random.default_rng(0)
    c = cipher_corpus(rng, 0, 0, 500)
    vocab = train_vocab({"en": c.held_plain, "fr": c.held_cipher}, tmp_path / "vocab", vocab_size=600,
                        max_sentences=1000)
    model = _embedder(vocab, emb_dim=32, hidden=32, n_layers=1, decoder=False).train()
    fr, en = vocab.encode_batch(c.held_cipher), vocab.encode_batch(c.held_plain)
    pairs = [(np.array(a), np.array(b)) for a, b in zip(fr, en)]
    rank, opt = TranslationRankingObjective(scale=10.0, margin=0.2), torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(15):
        batch = rank.make_batch([pairs[i] for i in rng.choice(len(pairs), 64, replace=False)],
                                (vocab.lang_id("fr"), vocab.lang_id("en")), rng)
        opt.zero_grad()
        rank.loss(model, batch)[0].backward()
        opt.step()
    SentenceEncoder(model.eval(), vocab, ["en", "fr"], max_len=60).save_pretrained(tmp_path / "model")
    p, vecs = {}, {}
    for kind in ("float32", "int8"):
        export_onnx(tmp_path / "model", tmp_path / kind, int8=kind == "int8")
        enc = load_encoder(tmp_path / kind)
        vecs[kind] = enc.encode(c.held_cipher, "fr"), enc.encode(c.held_plain, "en")
        p[kind] = p_at_1(*map(torch.from_numpy, vecs[kind]))
    assert min(p["float32"]) > 0.8, p  # a set where retrieval means something
    assert all(abs(a - b) <= 0.01 for a, b in zip(p["int8"], p["float32"])), p
    assert np.abs(vecs["int8"][0] - vecs["float32"][0]).max() > 1e-5  # the weights were quantized ...
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < 0.5 * (tmp_path / "float32" / "model.onnx").stat().st_size
    assert b"DynamicQuantizeLSTM" in (tmp_path / "int8" / "model.onnx").read_bytes()  # ... inside the LSTM too


@pytest.mark.parametrize("kind,what", [("s2s", "transformer_seq2seq"), ("xlm", "transformer_encoder"),
                                       ("classifier", "sequence_classifier"), ("vocab", "config.json")])
def test_models_onnx_export_cannot_take_are_one_line(kind, what, workspace, tmp_path, capsys):
    rc = main(["export", "onnx", "--model", str(getattr(workspace, kind)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert what in err[0] and "ONNX export takes a sentence embedder" in err[0] and "frozen-embedding classifier" in err[0]
    assert not (tmp_path / "out").exists()


def test_missing_onnx_packages_are_one_line(workspace, laser_export, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    rc = main(["export", "onnx", "--model", str(workspace.laser), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ['xling: error: ONNX models need the onnxruntime package: pip install "xling[onnx]" '
                               '(or make onnx)'], err
    with pytest.raises(XlingError, match=r'pip install "xling\[onnx\]"'):
        load_encoder(laser_export)


def test_a_changed_export_file_is_one_line(laser_export, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(laser_export, bad)
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes()[:-10])
    with pytest.raises(XlingError, match=r"model.onnx: changed since it was exported \(sha256"):
        load_encoder(bad)


def test_benchmark_runs_at_tiny_scale(workspace, tmp_path, capsys):
    saved = list(sys.path)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import onnx_speed
    finally:
        sys.path[:] = saved  # the script adds benchmarks/ too
    onnx_speed.main(["--model", str(workspace.laser), "--lang", "en", "--sentences", "64", "--repeats", "1",
                     "--threads", "1", "--work", str(tmp_path)])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert "onnx_speed.py" in cells[0] and len(cells) == 9, row
    assert all(float(c) > 0 for c in cells[5:8]), row  # sentences/s: PyTorch, ORT float32, ORT int8
