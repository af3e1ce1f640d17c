"""Zero-shot classification end to end on tiny synthetic data: fine-tuning an encoder, a head
on frozen embeddings (a stub sentence encoder), predictions, save/load, resume, the CLI,
and the user errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import FIXTURES as FIX, ROOT
from xling.classification.data import DataSpec, Example
from xling.classification.model import ClassificationObjective, SequenceClassifier
from xling.classification.predict import Predictor
from xling.classification.train import ClassifyConfig, run_classification
from xling.cli import main
from xling.config import from_dict, load_config
from xling.errors import XlingError
from xling.models.config import EncoderConfig
from xling.models.encoder import TransformerEncoder

CLASSES = {
    "fruit": (["apple", "pear", "plum", "grape", "lemon"], ["Apfel", "Birne", "Pflaume", "Traube", "Zitrone"]),
    "vehicle": (["car", "bus", "train", "bike", "truck"], ["Auto", "Omnibus", "Zug", "Fahrrad", "Laster"]),
    "animal": (["dog", "cat", "horse", "cow", "bird"], ["Hund", "Katze", "Pferd", "Kuh", "Vogel"]),
}
FILLERS = {"en": (["the", "a", "my", "one"], ["is", "was", "stays", "looks"], ["here", "there", "outside", "today"]),
           "de": (["der", "ein", "mein", "das"], ["ist", "war", "bleibt", "schaut"], ["hier", "dort", "draussen", "heute"])}
TINY = dict(d_model=32, n_layers=2, n_heads=4, d_ff=64, max_positions=64, dropout=0.0, attn_dropout=0.0)


def sentences(lang: str, n: int, seed: int) -> list[Example]:
    rng = np.random.default_rng(seed)
    det, verb, place = FILLERS[lang]
    out = []
    for _ in range(n):
        label = list(CLASSES)[rng.integers(3)]
        noun = CLASSES[label][lang == "de"][rng.integers(5)]
        words = [det[rng.integers(4)], noun, verb[rng.integers(4)], place[rng.integers(4)]]
        if rng.random() < 0.5:
            words = words[3:] + words[:3]
        out.append(Example(" ".join(words), label, lang))
    return out


def write_corpus(d: Path, split: str, data: dict[str, list[Example]]) -> None:
    """A Bible-style corpus: {split}.{lang} and {split}.{lang}.genre."""
    d.mkdir(parents=True, exist_ok=True)
    for lang, xs in data.items():
        (d / f"{split}.{lang}").write_text("".join(x.text + "\n" for x in xs), encoding="utf-8")
        (d / f"{split}.{lang}.genre").write_text("".join(x.label + "\n" for x in xs), encoding="utf-8")


class StubSentenceEncoder:
    """A perfect cross-lingual sentence encoder for tests: a bag of concepts (a word and
    its translation share a dimension), L2-normalised."""

    languages = ["de", "en"]

    def __init__(self, dim: int):
        self.dim = dim
        self.index = {}
        for c, (en, de) in enumerate(CLASSES.values()):
            for k, (e, g) in enumerate(zip(en, de)):
                self.index[e] = self.index[g] = 5 * c + k

    @classmethod
    def from_pretrained(cls, dir):
        return cls(json.loads((Path(dir) / "stub.json").read_text())["dim"])

    def encode(self, texts, lang, batch_size=64, normalize=True, truncation=None):
        if lang not in self.languages:
            raise XlingError(f"stub: unknown language {lang!r}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.split():
                out[i, self.index.get(w, 15 + hash(w) % (self.dim - 15))] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True) if normalize else out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from xling.tokenization.vocab import train_vocab

    d = tmp_path_factory.mktemp("cls")
    train = {"en": sentences("en", 240, 0), "de": sentences("de", 240, 1)}
    test = {"en": sentences("en", 60, 2), "de": sentences("de", 60, 3)}
    write_corpus(d / "corpus", "train", train)
    write_corpus(d / "corpus", "test", test)
    write_corpus(d / "corpus", "valid", {k: v[:20] for k, v in test.items()})
    vocab = train_vocab({k: [x.text for x in v] for k, v in train.items()}, d / "vocab", vocab_size=330,
                        max_sentences=480)
    torch.manual_seed(0)
    TransformerEncoder(EncoderConfig(vocab_size=len(vocab), n_langs=2, **TINY)).save_pretrained(d / "xlm", vocab=vocab)
    (d / "laser").mkdir()
    (d / "laser" / "stub.json").write_text(json.dumps({"dim": 24}))
    return d


def config(d: Path, **over) -> ClassifyConfig:
    base = {
        "method": "finetune", "init": str(d / "xlm"),
        "train": {"format": "bible", "path": str(d / "corpus"), "split": "train", "langs": ["en"]},
        "valid": {"format": "bible", "path": str(d / "corpus"), "split": "valid", "langs": ["en", "de"]},
        "data": {"max_len": 16, "max_tokens": 256, "batch_size": 32},
        "trainer": {"lr": 3e-3, "warmup_steps": 5, "max_steps": 60, "log_every": 10, "valid_every": 30,
                    "save_every": 30, "progress": False, "weight_decay": 0.0},
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return from_dict(ClassifyConfig, base)


@pytest.fixture(scope="module")
def finetuned(setup):
    run = setup / "ft"
    summary = run_classification(config(setup), run, progress=False)
    return run, summary


def test_finetuned_classifier_learns_a_separable_task(setup, finetuned):
    run, summary = finetuned
    assert summary["steps"] == 60 and summary["valid"]["acc/en"] >= 0.9, summary
    clf = Predictor.load(run / "model")
    assert clf.labels == ["animal", "fruit", "vehicle"] and not clf.pair
    xs = sentences("en", 60, 2)
    preds = clf.predict([x.text for x in xs], "en")
    assert np.mean([p == x.label for p, x in zip(preds, xs)]) >= 0.9
    meta = json.loads((run / "model" / "config.json").read_text())
    assert meta["model_type"] == "sequence_classifier" and meta["extra"]["classify"]["train_langs"] == ["en"]
    assert (run / "curves.png").is_file() and (run / "checkpoints" / "latest").is_file()


def test_predictions_keep_input_order_and_survive_save_load(setup, finetuned):
    run, _ = finetuned
    clf = Predictor.load(run / "model", max_tokens=40)  # several batches, sorted by length inside
    texts = [x.text for x in sentences("de", 30, 7)] + ["Apfel", "der Zug ist hier heute dort hier"]
    probs = clf.probabilities(texts, "de")
    one_by_one = np.concatenate([clf.probabilities([t], "de") for t in texts])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)
    rev = clf.probabilities(texts[::-1], "de")
    np.testing.assert_allclose(rev[::-1], probs, atol=1e-5)
    assert clf.predict(texts, "de") == [clf.labels[i] for i in probs.argmax(-1)]
    # the last checkpoint is a loadable classifier too, with the same weights as the final model
    ckpt = Predictor.load(run / "checkpoints" / "step_00000060", max_tokens=40)
    np.testing.assert_array_equal(ckpt.probabilities(texts, "de"), probs)
    # a save -> load round trip of the in-memory model gives identical predictions
    model = SequenceClassifier.from_pretrained(run / "model")
    from xling.classification.train import save_classifier

    save_classifier(model, setup / "copy", {}, clf.vocab)
    np.testing.assert_array_equal(Predictor.load(setup / "copy", max_tokens=40).probabilities(texts, "de"), probs)


def test_resume_continues_exactly(setup, finetuned):
    run, _ = finetuned
    part = setup / "part"
    run_classification(config(setup), part, stop_after=30, progress=False)
    run_classification(config(setup), part, resume=True, progress=False)
    a = SequenceClassifier.from_pretrained(run / "model").state_dict()
    b = SequenceClassifier.from_pretrained(part / "model").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_freeze_layers_keeps_the_bottom_of_the_encoder(setup):
    """freeze_layers=1: embeddings and layer 0 leave training bit-identical, layer 1 and the
    head move; -1 moves everything; a count beyond the encoder is a config error."""
    init = TransformerEncoder.from_pretrained(setup / "xlm").state_dict()
    short = {"max_steps": 8, "valid_every": 0, "save_every": 0}
    run_classification(config(setup, freeze_layers=1, valid=None, trainer=short), setup / "frz", progress=False)
    model = SequenceClassifier.from_pretrained(setup / "frz" / "model")
    after = model.encoder.state_dict()
    frozen = [k for k in init if k.startswith(("tok_emb", "pos_emb", "lang_emb", "emb_norm", "layers.0."))]
    moving = [k for k in init if k.startswith("layers.1.")]
    assert frozen and moving
    for k in frozen:
        assert torch.equal(init[k], after[k]), k
    assert all(not torch.equal(init[k], after[k]) for k in moving if k.endswith("weight"))
    run_classification(config(setup, freeze_layers=-1, valid=None, trainer=short), setup / "all", progress=False)
    moved = SequenceClassifier.from_pretrained(setup / "all" / "model").encoder.state_dict()
    assert not torch.equal(init["tok_emb.weight"], moved["tok_emb.weight"])
    with pytest.raises(XlingError, match="freeze_layers=3"):
        run_classification(config(setup, freeze_layers=3, trainer=short), setup / "bad", progress=False)


def test_pairs_are_built_like_tlm():
    obj = ClassificationObjective()
    from xling.classification.model import token_example

    ex = [(token_example([7, 8, 9], [10, 11], 1, 2, 2, 3), 0), (token_example([7], [12], 1, 8, 2, 3), 2)]
    batch = obj.make_batch(ex)
    assert batch["tokens"].tolist() == [[2, 7, 8, 3, 2, 10, 11, 3], [2, 7, 3, 2, 12, 3, 0, 0]]  # max_len=2 cut 9
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2, 0, 0]]
    assert batch["langs"][0].tolist() == [1] * 8 and batch["labels"].tolist() == [0, 2]


def test_xnli_pairs_fine_tune_and_predict(setup, tmp_path):
    cfg = config(setup, train={"format": "multinli", "path": str(FIX / "multinli_1.0_train.jsonl"), "langs": []},
                 valid=None, trainer={"max_steps": 3, "valid_every": 0, "save_every": 0})
    # the vocabulary knows en and de only: XNLI's other languages are rejected up front
    cfg.test = DataSpec(format="xnli", path=str(FIX / "xnli.test.tsv"), split="test")
    with pytest.raises(XlingError, match="unknown language code 'fr'"):
        run_classification(cfg, tmp_path / "bad", progress=False)
    cfg.test.langs = ["en", "de"]
    summary = run_classification(cfg, tmp_path / "nli", progress=False)
    res = json.loads((tmp_path / "nli" / "eval.json").read_text())
    assert set(res["languages"]) == {"en", "de"} and summary["eval"]["signature"] == res["signature"]
    assert res["languages"]["de"]["n"] == 3 and (tmp_path / "nli" / "eval.png").stat().st_size > 1000
    clf = Predictor.load(tmp_path / "nli" / "model")
    assert clf.pair and len(clf.predict([("Der Zug.", "Ein Zug."), ("a b", "c")], "de")) == 2
    with pytest.raises(XlingError, match="takes \\(premise, hypothesis\\) pairs"):
        clf.predict(["just one sentence"], "de")


def test_frozen_embeddings_transfer_zero_shot(setup, monkeypatch):
    from helpers import stub_encoder

    stub_encoder(monkeypatch, StubSentenceEncoder)
    cfg = config(setup, method="frozen", init=str(setup / "laser"), head={"hidden": 16, "dropout": 0.0},
                 trainer={"lr": 1e-2, "max_steps": 80})
    cfg.test = DataSpec(format="bible", path=str(setup / "corpus"), split="test", langs=["en", "de"])
    summary = run_classification(cfg, setup / "frozen", progress=False)
    res = json.loads((setup / "frozen" / "eval.json").read_text())
    assert res["languages"]["en"]["accuracy"] >= 0.9 and res["languages"]["de"]["accuracy"] >= 0.9, res
    assert summary["eval"]["transfer_gap"] == pytest.approx(
        res["languages"]["en"]["accuracy"] - res["languages"]["de"]["accuracy"])
    model_dir = setup / "frozen" / "model"
    assert (model_dir / "encoder" / "stub.json").is_file()  # self-contained: the encoder travels with the head
    clf = Predictor.load(model_dir)
    assert clf.predict(["mein Hund ist hier", "the pear was there"], "de") == ["animal", "fruit"]
    with pytest.raises(XlingError, match="unknown language code 'sw'"):
        clf.predict(["rafiki"], "sw")


def test_bad_inputs_fail_before_training(setup, tmp_path):
    bad = tmp_path / "corpus"
    write_corpus(bad, "test", {"de": [Example("ein Apfel", "fruit", "de"), Example("ein Stein", "mineral", "de"),
                                      Example("ein Gott", "deity", "de")]})
    cfg = config(setup)
    cfg.test = DataSpec(format="bible", path=str(bad), split="test", langs=["de"])
    with pytest.raises(XlingError, match=r"labels never seen in training: 'deity', 'mineral'"):
        run_classification(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    write_corpus(bad, "test", {"sw": [Example("tunda", "fruit", "sw")]})
    cfg.test = DataSpec(format="bible", path=str(bad), split="test", langs=["sw"])
    with pytest.raises(XlingError, match="unknown language code 'sw'"):
        run_classification(cfg, tmp_path / "run", progress=False)
    with pytest.raises(XlingError, match="unknown config key 'trainer.max_step'"):
        load_config(ClassifyConfig, None, ["trainer.max_step=3"])


def _one_line_error(capsys, rc, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err and err[-1].startswith("xling: error:") and match in err[-1], err
    assert "Traceback" not in "\n".join(err)


def test_cli_train_predict_evaluate(setup, tmp_path, capsys):
    cfg_path = tmp_path / "cls.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "init": str(setup / "xlm"),
        "train": {"format": "bible", "path": str(setup / "corpus"), "split": "train", "langs": ["en"]},
        "data": {"max_len": 16, "max_tokens": 256},
        "trainer": {"lr": 3e-3, "warmup_steps": 5, "max_steps": 40, "log_every": 10, "progress": False},
    }))
    run = tmp_path / "run"
    assert main(["classify", "train", "--config", str(cfg_path), "--out", str(run), "--set", "trainer.seed=1"]) == 0
    texts = [x.text for x in sentences("en", 12, 9)]
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    preds = tmp_path / "preds.txt"
    assert main(["classify", "predict", "--model", str(run / "model"), "--input", str(tmp_path / "in.txt"),
                 "--lang", "en", "--out", str(preds), "--scores"]) == 0
    lines = preds.read_text().splitlines()
    assert len(lines) == 12 and all(x.split("\t")[0] in CLASSES and 0 < float(x.split("\t")[1]) <= 1 for x in lines)
    assert [x.split("\t")[0] for x in lines] == Predictor.load(run / "model").predict(texts, "en")  # input order

    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["evaluate", "classification", "--model", str(run / "model"), "--data", str(setup / "corpus"),
                 "--langs", "en,de", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    res = json.loads(out.read_text())
    acc = {k: v["accuracy"] for k, v in res["languages"].items()}
    assert list(acc) == ["en", "de"] and res["source_lang"] == "en"
    for k, v in res["languages"].items():
        assert v["accuracy"] == v["correct"] / v["n"] and v["n"] == 60
    assert res["average"] == pytest.approx((acc["en"] + acc["de"]) / 2)
    assert res["transfer_gap"] == pytest.approx(acc["en"] - acc["de"])
    assert res["signature"].startswith("xling-classification|model:") and "|split:test|" in res["signature"]
    assert "| en (source) |" in table and "transfer gap" in table
    assert out.with_suffix(".png").stat().st_size > 1000

    # user errors: one line each, with the file and row / the language
    rc = main(["classify", "predict", "--model", str(run / "model"), "--input", str(tmp_path / "in.txt"),
               "--lang", "xx", "--out", str(preds)])
    _one_line_error(capsys, rc, "unknown language code 'xx'")
    (tmp_path / "gap.txt").write_text("one\n\nthree\n", encoding="utf-8")
    rc = main(["classify", "predict", "--model", str(run / "model"), "--input", str(tmp_path / "gap.txt"),
               "--lang", "en", "--out", str(preds)])
    _one_line_error(capsys, rc, "gap.txt:2: empty line")
    rc = main(["evaluate", "classification", "--model", str(setup / "xlm"), "--data", str(setup / "corpus")])
    _one_line_error(capsys, rc, "not a classifier")
    rc = main(["evaluate", "classification", "--model", str(run / "model"), "--data", str(FIX / "xnli.test.tsv")])
    _one_line_error(capsys, rc, "labels never seen in training: 'contradiction', 'entailment', 'neutral'")


def test_bible_config_is_valid():
    cfg = load_config(ClassifyConfig, ROOT / "configs" / "classify_bible.yaml", ["trainer.max_steps=3"])
    assert cfg.method == "finetune" and cfg.train.langs == ["en"] and cfg.test.split == "test"
    laser = load_config(ClassifyConfig, ROOT / "configs" / "classify_bible_laser.yaml")
    assert laser.method == "frozen"


def test_mean_pooling_ignores_padding():
    from xling.classification.model import ClassifierConfig

    torch.manual_seed(0)
    enc = EncoderConfig(vocab_size=50, n_langs=2, **TINY)
    model = SequenceClassifier(ClassifierConfig(enc, ["a", "b", "c"], pooling="mean", dropout=0.0, max_len=16)).eval()
    short = torch.tensor([[2, 7, 8, 3]])
    padded = torch.tensor([[2, 7, 8, 3, 0, 0], [2, 9, 9, 9, 9, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model(short), model(padded)[:1], atol=1e-5, rtol=1e-5)


def test_frozen_classifier_on_a_named_encoder(setup, tmp_path):
    """``init: use-multilingual`` (the shipped USE, a backend name, no directory): the classifier records
    the name instead of copying a directory, reloads by it, and transfers from English to German."""
    cfg = config(setup, method="frozen", init="use-multilingual", head={"hidden": 16, "dropout": 0.0},
                 trainer={"lr": 1e-2, "max_steps": 40, "valid_every": 0, "save_every": 0})
    cfg.test = DataSpec(format="bible", path=str(setup / "corpus"), split="test", langs=["en", "de"])
    run_classification(cfg, tmp_path / "use", progress=False)
    res = json.loads((tmp_path / "use" / "eval.json").read_text())
    assert res["languages"]["en"]["accuracy"] >= 0.9 and res["languages"]["de"]["accuracy"] >= 0.8, res
    model_dir = tmp_path / "use" / "model"
    assert not (model_dir / "encoder").exists()
    assert json.loads((model_dir / "config.json").read_text())["config"]["encoder"] == "use-multilingual"
    clf = Predictor.load(model_dir)
    test = sentences("de", 60, 3)
    got = clf.predict([x.text for x in test], "de")
    assert np.mean([g == x.label for g, x in zip(got, test)]) == pytest.approx(res["languages"]["de"]["accuracy"])
