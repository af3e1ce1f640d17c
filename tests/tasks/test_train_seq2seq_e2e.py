"""``xling train`` beyond XLM: MASS, UNILM, translation / summarization fine-tuning,
initialisation from saved models, and the user errors of those configs."""

import json

import pytest
import torch

from conftest import FIXTURE_DB, TINY_CONFIG
from xling.cli import main
from xling.config import load_config
from xling.models.encoder import TransformerEncoder
from xling.models.seq2seq import TransformerSeq2Seq
from xling.tasks.train import TrainConfig, init_model
from xling.tokenization.vocab import Vocab

TINY = str(TINY_CONFIG)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2s")
    assert main(["corpus", "bible", "--langs", "en,fr", "--db", str(FIXTURE_DB), "--out", str(d / "corpus"), "--quiet"]) == 0
    assert main(["vocab", "--corpus", str(d / "corpus"), "--size", "400", "--out", str(d / "vocab")]) == 0
    # a toy summarization task in the Debian layout: verse -> its first three words
    for split in ("train", "valid"):
        lines = (d / "corpus" / f"{split}.en").read_text(encoding="utf-8").splitlines()
        (d / "corpus" / f"{split}.en.desc").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (d / "corpus" / f"{split}.en.syn").write_text("\n".join(" ".join(x.split()[:3]) for x in lines) + "\n",
                                                      encoding="utf-8")
    return d


def _overrides(d, *extra):
    return [f"data.corpus={d / 'corpus'}", f"data.vocab={d / 'vocab'}", "data.max_len=40", "data.max_tgt_len=40",
            "trainer.valid_every=0", *extra]


def _train(d, out, *extra):
    args = ["train", "--config", TINY, "--out", str(out)]
    for o in _overrides(d, *extra):
        args += ["--set", o]
    return main(args)


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def _one_line_error(capsys, rc, match):
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err and err[-1].startswith("xling: error:") and match in err[-1], err
    assert "Traceback" not in "\n".join(err)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def mass_run(workdir):
    run = workdir / "mass"
    rc = _train(workdir, run, "model_type=seq2seq", "model.n_dec_layers=2",
                "objectives=[{type: mass, langs: [en, fr]}, {type: mlm, langs: [en]}]")
    assert rc == 0
    return run


def test_mass_pretraining_trains_an_encoder_decoder(mass_run):
    m = TransformerSeq2Seq.from_pretrained(mass_run / "model")
    assert m.config.n_dec_layers == 2
    valid = _summary(mass_run)["valid"]
    assert {"ce/mass-en", "ce/mass-fr", "ce/mlm-en"} <= set(valid)
    metrics = [json.loads(x) for x in (mass_run / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/mass-en", "loss/mass-fr"} <= {k for m in metrics for k in m}
    meta = json.loads((mass_run / "model" / "config.json").read_text())
    assert meta["model_type"] == "transformer_seq2seq"
    assert [o["type"] for o in meta["extra"]["pretrain"]["objectives"]] == ["mass", "mlm"]


def test_translation_finetuning_starts_from_the_mass_weights(workdir, mass_run):
    over = _overrides(workdir, "model_type=seq2seq", f"init={mass_run / 'model'}", "data.vocab=",
                      "objectives=[{type: translation, langs: [en-fr, fr-en]}]", "model.dropout=0.0")
    cfg = load_config(TrainConfig, TINY, over)
    model = init_model(cfg, Vocab.load(mass_run / "model"))
    assert _same_weights(model, TransformerSeq2Seq.from_pretrained(mass_run / "model"))
    assert model.config.dropout == 0.0
    run = workdir / "mt"
    args = ["train", "--config", TINY, "--out", str(run)]
    for o in over:
        args += ["--set", o]
    assert main(args) == 0
    valid = _summary(run)["valid"]
    assert {"ce/translation-en-fr", "ce/translation-fr-en"} <= set(valid)
    meta = json.loads((run / "model" / "config.json").read_text())
    assert meta["extra"]["pretrain"]["init"] == str(mass_run / "model")
    assert meta["extra"]["init_extra"]["pretrain"]["objectives"][0]["type"] == "mass"


def test_xlm_initialisation_of_both_sides(workdir):
    xlm = workdir / "xlm"
    assert _train(workdir, xlm) == 0
    cfg = load_config(TrainConfig, TINY, _overrides(workdir, "model_type=seq2seq", f"init={xlm / 'model'}",
                                                       "objectives=[{type: translation, langs: [en-fr]}]"))
    model = init_model(cfg, Vocab.load(workdir / "vocab"))
    enc = TransformerEncoder.from_pretrained(xlm / "model")
    assert isinstance(model, TransformerSeq2Seq)
    assert _same_weights(model.encoder, enc)
    dec0, enc0 = model.dec_layers[0] if hasattr(model, "dec_layers") else model.decoder[0], enc.layers[0]
    assert torch.equal(dec0.self_attn.qkv_proj.weight, enc0.self_attn.qkv_proj.weight)
    assert torch.equal(dec0.ff.fc1.weight, enc0.ff.fc1.weight)


def test_unilm_pretraining_then_summarization_finetuning(workdir, capsys):
    run = workdir / "unilm"
    assert _train(workdir, run, "objectives=[{type: unilm, langs: [en, fr]}]") == 0
    assert {"ce/unilm-en", "ce/unilm-fr"} <= set(_summary(run)["valid"])
    ft = workdir / "unilm-sum"
    assert _train(workdir, ft, f"init={run / 'model'}", "objectives=[{type: summarization, langs: [en]}]") == 0
    assert "ce/summarization-en" in _summary(ft)["valid"]
    src = workdir / "docs.txt"
    src.write_text("In the beginning God created the heaven\n\nAnd the earth was without form\n", encoding="utf-8")
    out = workdir / "sums.txt"
    assert main(["generate", "--model", str(ft / "model"), "--lang", "en", "--input", str(src), "--output", str(out),
                 "--beam", "2", "--max-len-b", "5"]) == 0
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 4 and lines[1] == "" and lines[3] == ""  # 3 outputs, the empty input stays empty


def test_causal_unilm_finetuning_is_recorded_and_decoded_that_way(workdir, monkeypatch):
    """seq2seq.corruption=causal is written to the model's record; load_generation_model reads
    it and `xling generate` drives the causal step decoder (no <mask> fed)."""
    from xling.generation import api
    from xling.generation.unilm import UnilmStepDecoder

    ft = workdir / "unilm-causal"
    assert _train(workdir, ft, "objectives=[{type: summarization, langs: [en]}]", "seq2seq.corruption=causal") == 0
    meta = json.loads((ft / "model" / "config.json").read_text())
    assert meta["extra"]["pretrain"]["seq2seq_corruption"] == "causal"
    assert api.load_generation_model(ft / "model").decoding == "causal"
    made = []
    real = api.step_decoder
    monkeypatch.setattr(api, "step_decoder", lambda *a: made.append(real(*a)) or made[-1])
    src, out = workdir / "docs_causal.txt", workdir / "sums_causal.txt"
    src.write_text("In the beginning God created the heaven\n", encoding="utf-8")
    assert main(["generate", "--model", str(ft / "model"), "--lang", "en", "--input", str(src), "--output", str(out),
                 "--beam", "2", "--max-len-b", "5"]) == 0
    assert made and all(isinstance(d, UnilmStepDecoder) and d.causal for d in made)
    # without the record (UNILM's own fine-tuning, older models) decoding feeds <mask>
    from xling.models.record import TrainingRecord

    assert TrainingRecord.from_extra({"pretrain": {"seq2seq_corruption": "bert"}}).decoding() == "mask"
    assert TrainingRecord.from_extra({}).decoding() == "mask"


def _valid_records(run):
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == "valid"]


def _regenerated(workdir, model_dir, objective, lang, n, tgt_lang):
    """chrF / BLEU of the saved model on the first n valid pairs through the public text API
    (texts in, greedy, texts out), the way a user would score it."""
    from xling.evaluation.textmetrics import bleu
    from xling.generation.api import generate_texts, load_generation_model
    from xling.generation.base import GenerationConfig
    from xling.tasks.build import ObjectiveSpec, build_tasks
    from xling.tasks.train import build_context

    cfg = load_config(TrainConfig, TINY, _overrides(workdir))
    vocab = Vocab.load(workdir / "vocab")
    task = build_tasks([ObjectiveSpec(objective, [lang])], build_context(cfg, vocab), split="valid", limit=n)[0]
    srcs = [vocab.decode(x.tolist()) for x, _ in task.examples]
    assert [vocab.encode(t) for t in srcs] == [x.tolist() for x, _ in task.examples]  # text round trip: same ids
    refs = [vocab.decode(y.tolist()) for _, y in task.examples]
    m = load_generation_model(model_dir)
    src_lang = lang.split("-")[0]
    hyps = generate_texts(m.model, vocab, srcs, src_lang, tgt_lang, GenerationConfig(beam=1, max_len_a=0.0, max_len_b=40),
                          progress=False, decoding=m.decoding)
    return bleu(hyps, refs, tgt_lang)


def test_validation_by_generation_keeps_the_best_chrf_model(workdir):
    """seq2seq.valid_generate reports bleu/chrF of greedy outputs; best_metric chrf/avg (max)
    keeps the best validation's weights, whose outputs score exactly that chrF again."""
    run = workdir / "mt-gen-valid"
    assert _train(workdir, run, "model_type=seq2seq", "objectives=[{type: translation, langs: [en-fr]}]",
                  "seq2seq.valid_generate=6", "trainer.valid_every=2", "trainer.max_steps=8", "trainer.lr=3e-3",
                  "trainer.best_metric=chrf/avg", "trainer.best_mode=max") == 0
    valid = _valid_records(run)
    assert [r["step"] for r in valid] == [2, 4, 6, 8]
    for r in valid:
        assert {"bleu/translation-en-fr", "chrf/translation-en-fr", "bleu/avg", "chrf/avg"} <= set(r)
        assert r["chrf/avg"] == r["chrf/translation-en-fr"] and 0 <= r["bleu/avg"] <= 100
    chrfs = [r["chrf/avg"] for r in valid]
    best = _summary(run)["best"]
    assert best["metric"] == "chrf/avg" and best["value"] == max(chrfs) and best["step"] == valid[chrfs.index(max(chrfs))]["step"]
    again = _regenerated(workdir, run / "model", "translation", "en-fr", 6, "fr")
    assert again["chrf"] == pytest.approx(best["value"], abs=1e-9)


def test_validation_by_generation_decodes_a_causal_unilm_as_its_saved_model_does(workdir):
    run = workdir / "unilm-causal-gen-valid"
    assert _train(workdir, run, "objectives=[{type: summarization, langs: [en]}]", "seq2seq.corruption=causal",
                  "seq2seq.valid_generate=5", "trainer.max_steps=6", "trainer.lr=3e-3") == 0
    last = _valid_records(run)[-1]
    assert last["step"] == 6 and "chrf/summarization-en" in last
    again = _regenerated(workdir, run / "model", "summarization", "en", 5, "en")
    assert again["chrf"] == pytest.approx(last["chrf/summarization-en"], abs=1e-9)
    assert again["bleu"] == pytest.approx(last["bleu/summarization-en"], abs=1e-9)


@pytest.mark.parametrize(
    "extra, match",
    [
        (["seq2seq.valid_generate=-1"], "seq2seq.valid_generate"),
        (["objectives=[{type: mass, langs: [en]}]"], "needs model_type: seq2seq"),
        (["model_type=seq2seq", "objectives=[{type: unilm, langs: [en]}]"], "needs model_type: encoder"),
        (["objectives=[{type: translation, langs: [en]}]"], "should be a pair"),
        (["model_type=decoder"], "unknown model_type"),
        (["objectives=[{type: summarization, langs: [fr]}]"], "no train summarization data for 'fr'"),
        (["objectives=[{type: translation, langs: [en-xx]}]"], "'xx'"),
    ],
)
def test_config_errors_are_one_line(workdir, capsys, extra, match):
    out = workdir / f"bad-{abs(hash(match))}"
    _one_line_error(capsys, _train(workdir, out, *extra), match)
    assert not (out / "model").exists()


def test_init_refuses_architecture_changes(workdir, capsys, mass_run):
    rc = _train(workdir, workdir / "bad-init", "model_type=seq2seq", f"init={mass_run / 'model'}", "model.d_model=64",
                "objectives=[{type: translation, langs: [en-fr]}]")
    _one_line_error(capsys, rc, "model.d_model")
    rc = _train(workdir, workdir / "bad-init2", f"init={mass_run / 'model'}", "objectives=[{type: mlm, langs: [en]}]")
    _one_line_error(capsys, rc, "cannot initialise model_type encoder")


def test_max_examples_takes_a_fixed_random_subset_of_train_only(workdir):
    from xling.tasks.build import ObjectiveSpec, build_tasks
    from xling.tasks.train import build_context

    cfg = load_config(TrainConfig, TINY, _overrides(workdir, "objectives=[{type: translation, langs: [en-fr]}]"))
    vocab = Vocab.load(workdir / "vocab")
    s = build_context(cfg, vocab)
    full = build_tasks([ObjectiveSpec("translation", ["en-fr"])], s)[0]
    sub = build_tasks([ObjectiveSpec("translation", ["en-fr"], max_examples=7)], s)[0]
    again = build_tasks([ObjectiveSpec("translation", ["en-fr"], max_examples=7)], s)[0]
    assert len(sub.examples) == 7 and len(sub.lengths) == 7
    full_keys = [tuple(x.tolist()) for x, _ in full.examples]
    sub_keys = [tuple(x.tolist()) for x, _ in sub.examples]
    assert sub_keys == [tuple(x.tolist()) for x, _ in again.examples]  # deterministic
    assert set(sub_keys) <= set(full_keys) and sub_keys != full_keys[:7]  # a random subset, not the head
    valid = build_tasks([ObjectiveSpec("translation", ["en-fr"], max_examples=2)], s, split="valid")[0]
    assert len(valid.examples) > 2  # validation data is never subsampled
