"""Distillation (objective ``distill``) and the teacher's on-disk vector cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from xling.cli import main
from xling.config import load_config
from xling.embeddings.backends.registry import load_encoder
from xling.embeddings.cache import VectorCache, default_cache_dir
from xling.errors import XlingError
from xling.objectives.distill import DistillConfig, distill_loss
from xling.tasks.train import TrainConfig, run_training


class CountingEncoder:
    """A toy teacher: a fixed random projection of character counts; counts the texts it encodes."""

    def __init__(self, dim: int = 8) -> None:
        self.dim, self.name, self.calls = dim, f"toy{dim}", []
        self.w = np.random.default_rng(dim).normal(size=(256, dim)).astype(np.float32)

    def encode(self, texts, lang, batch_size=64):
        self.calls.append(list(texts))
        x = np.zeros((len(texts), 256), np.float32)
        for i, t in enumerate(texts):
            for b in t.encode("utf-8"):
                x[i, b] += 1
        return x @ self.w


def test_vector_cache_encodes_each_text_once_and_reads_back_exactly(tmp_path):
    teacher = CountingEncoder()
    loads = []
    cache = VectorCache(tmp_path / "c", lambda: loads.append(1) or teacher, "toy", progress=False)
    texts = ["a b", "c d", "a b", "e f"]
    rows = cache.rows(texts, "en")
    assert rows[0] == rows[2] and len(set(rows.tolist())) == 3
    assert teacher.calls == [["a b", "c d", "e f"]]  # duplicates once, in first-seen order
    np.testing.assert_array_equal(cache.vectors[rows], teacher.encode(texts, "en"))
    # the same text in another language is another key; known texts are not encoded again
    rows2 = cache.rows(["c d", "a b", "g"], "fr")
    assert teacher.calls[-1] == ["c d", "a b", "g"] and len(cache) == 6
    assert cache.rows(["a b"], "en")[0] == rows[0] and len(teacher.calls) == 3  # (the check call above)
    # reopened: a memory map, nothing loaded or encoded
    again = VectorCache(tmp_path / "c", lambda: pytest.fail("the teacher was loaded"), "toy", progress=False)
    assert isinstance(again.vectors, np.memmap) and again.dim == 8
    np.testing.assert_array_equal(again.vectors[again.rows(texts, "en")], cache.vectors[rows])
    np.testing.assert_array_equal(again.rows(["c d", "a b", "g"], "fr"), rows2)
    assert loads == [1]
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta == {"format": 1, "encoder": "toy", "dim": 8, "count": 6}
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".")]  # no temp file left


def test_vector_cache_refuses_a_teacher_of_another_dimension(tmp_path):
    VectorCache(tmp_path / "c", lambda: CountingEncoder(8), "toy8", progress=False).rows(["x"], "en")
    other = VectorCache(tmp_path / "c", lambda: CountingEncoder(16), "toy16", progress=False)
    assert other.rows(["x"], "en").tolist() == [0]  # cached: the teacher is not needed
    with pytest.raises(XlingError, match=r"cached vectors are 8-d \(made by toy8\), but toy16 gives 16-d"):
        other.rows(["new"], "en")


def test_default_cache_dir_follows_the_teacher_files(tmp_path, monkeypatch):
    monkeypatch.setenv("XLING_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"a": 1}')
    first = default_cache_dir(str(tmp_path / "m"))
    assert first.parent == tmp_path / "cache" / "vectors" and first.name.startswith("m-")
    (tmp_path / "m" / "config.json").write_text('{"a": 2}')
    assert default_cache_dir(str(tmp_path / "m")) != first
    assert default_cache_dir("use-multilingual").name.startswith("use-multilingual-")


def test_distill_loss_kinds():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mse, cos = distill_loss(s, t, "mse")
    assert mse.item() == pytest.approx(0.25) and cos.item() == pytest.approx(1.0)
    assert distill_loss(s, t, "cosine")[0].item() == pytest.approx(0.0)
    assert distill_loss(s, t, "mse+cosine")[0].item() == pytest.approx(0.25)
    mse.backward()
    assert s.grad is not None
    with pytest.raises(XlingError, match="student's embeddings are 3-d, the teacher's 2-d"):
        distill_loss(torch.zeros(2, 3), t, "mse")
    with pytest.raises(XlingError, match="distill.loss"):
        DistillConfig(loss="l1")
    with pytest.raises(XlingError, match="distill.temperature"):
        DistillConfig(temperature=0)


def test_contrastive_distill_loss_against_a_loop():
    """The symmetric in-batch softmax equals a per-row computation; an equal teacher row is not a negative."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    rows = torch.tensor([7, 3, 7, 1, 2])
    tau = 0.1
    cos = torch.tensor([[float(F.cosine_similarity(a, b, dim=0)) for b in t] for a in s]) / tau  # (5, 5)
    want = 0.0
    for i in range(5):
        keep = [j for j in range(5) if j == i or int(rows[j]) != int(rows[i])]
        want += -(cos[i, i] - torch.logsumexp(cos[i, keep], 0)) / 10  # student i among the teachers
        want += -(cos[i, i] - torch.logsumexp(cos[keep, i], 0)) / 10  # teacher i among the students
    got = distill_loss(s, t, "contrastive", rows, tau)[0]
    assert got.item() == pytest.approx(float(want), rel=1e-5)
    assert distill_loss(s, t, "mse+contrastive", rows, tau)[0].item() == pytest.approx(
        float(want) + F.mse_loss(s, t).item(), rel=1e-5)
    # a student on its teacher's direction: the loss nears 0; every student on the teachers' mean: at least
    # log B / 2 (each teacher sees B identical students), where MSE is lower than for a noisy copy
    assert distill_loss(t * 3, t, "contrastive", None, 0.01)[0].item() < 1e-3
    mean = t.mean(0, keepdim=True).expand(5, 8)
    noisy = t + 1.2 * torch.randn(5, 8, generator=g)
    assert distill_loss(mean, t, "contrastive", None, tau)[0].item() >= np.log(5) / 2
    assert distill_loss(mean, t, "mse")[0] < distill_loss(noisy, t, "mse")[0]
    assert distill_loss(mean, t, "contrastive", None, tau)[0] > distill_loss(noisy, t, "contrastive", None, tau)[0]


# ---------------------------------------------------------------- xling train


def _config(ws, tmp_path: Path, teacher: Path, name: str = "cfg.yaml", **over) -> Path:
    cfg = {
        "model_type": "sentence",
        "data": {"corpus": str(ws.corpus), "vocab": str(ws.vocab), "max_len": 30, "max_tokens": 600,
                 "valid_examples": 16},
        "sentence": {"pivots": ["en"]},
        "distill": {"teacher": str(teacher), "cache": str(tmp_path / "teacher_cache")},
        "objectives": [{"type": "distill", "langs": ["fr"]}],
        "model": {"emb_dim": 32, "hidden": 16, "n_layers": 1, "dropout": 0.0, "decoder": False},
        "trainer": {"lr": 3e-3, "warmup_steps": 1, "max_steps": 400, "log_every": 1, "valid_every": 0,
                    "save_every": 100, "seed": 0, "progress": False},
    }
    for k, v in over.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and isinstance(cfg.get(k), dict) else v
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _losses(run: Path) -> list[float]:
    return [m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in m]


def test_distill_trains_a_student_towards_the_teacher_and_resumes_without_it(workspace, tmp_path):
    teacher = tmp_path / "teacher"
    shutil.copytree(workspace.laser, teacher)  # a 32-d xling sentence embedder (random weights)
    cfg = _config(workspace, tmp_path, teacher)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "a")]) == 0
    losses = _losses(tmp_path / "a")
    assert len(losses) == 400 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert {"p1/en-fr", "p1/avg"} <= set(summary["valid"])
    # the cache holds the teacher's own vectors of every English train + valid verse, once
    enc = load_encoder(teacher)
    english = (workspace.corpus / "train.en-fr.en").read_text(encoding="utf-8").splitlines()
    french = (workspace.corpus / "train.en-fr.fr").read_text(encoding="utf-8").splitlines()
    meta = json.loads((tmp_path / "teacher_cache" / "meta.json").read_text())
    cache = VectorCache(tmp_path / "teacher_cache", lambda: pytest.fail("teacher loaded"), "t", progress=False)
    target = cache.vectors[cache.rows(english, "en")]
    np.testing.assert_allclose(target, enc.encode(english, "en"), atol=1e-5)
    # the student maps French verses near the teacher's vectors of their English translations, and what varies
    # from verse to verse too (centred vectors), so it learned from the input, not only the average vector
    student = load_encoder(tmp_path / "a" / "model").encode(french, "fr")

    def cos(a, b):
        return float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))

    centred = cos(student - student.mean(0), target - target.mean(0))  # the part that varies with the verse
    print(f"student cos to the teacher {cos(student, target):.3f}, centred {centred:.3f}")
    assert cos(student, target) > 0.5 and centred > 0.2
    # stopped after 100 updates, the teacher removed, resumed: the same run, no teacher call
    run_training(load_config(TrainConfig, cfg), tmp_path / "b", stop_after=100)
    assert (tmp_path / "b" / "checkpoints" / "step_00000100").is_dir()
    shutil.rmtree(teacher)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "b"), "--resume"]) == 0
    assert _losses(tmp_path / "b") == losses
    assert json.loads((tmp_path / "teacher_cache" / "meta.json").read_text()) == meta


def test_distill_bad_input_is_one_line(workspace, tmp_path, capsys):
    teacher = workspace.laser
    cases = [
        (_config(workspace, tmp_path, teacher, "dim.yaml", model={"hidden": 8}),
         "the teacher's vectors are 32-d but the student's embeddings 16-d: set model.hidden to 16"),
        (_config(workspace, tmp_path, teacher, "lang.yaml", objectives=[{"type": "distill", "langs": ["de"]}]),
         "'de'"),
        (_config(workspace, tmp_path, teacher, "none.yaml", distill={"teacher": ""}),
         "distill.teacher: objective distill needs a teacher"),
        (_config(workspace, tmp_path, tmp_path / "nowhere", "where.yaml", distill={"cache": ""}),
         "no such model directory"),
    ]
    for path, match in cases:
        out = tmp_path / ("run_" + path.stem)
        rc = main(["train", "--config", str(path), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].startswith("xling: error:") and match in err[-1], (path.name, err)
        assert not (out / "model").exists()


def test_the_teacher_encodes_only_the_examples_a_task_keeps(workspace, tmp_path):
    """max_examples and the validation limit apply before the teacher runs."""
    cfg = _config(workspace, tmp_path, workspace.laser, objectives=[{"type": "distill", "langs": ["fr"],
                                                                     "max_examples": 7}],
                  data={"valid_examples": 3}, trainer={"max_steps": 1, "save_every": 0})
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    count = json.loads((tmp_path / "teacher_cache" / "meta.json").read_text())["count"]
    english = len((workspace.corpus / "train.en").read_text(encoding="utf-8").splitlines())
    assert 7 < count <= 2 * (7 + 3) < english  # fr-en and en-en, train and valid, at most


def test_a_second_corpus_is_its_own_domain(workspace, tmp_path):
    """An objective entry with its own corpus (Bible + Debian in the recipe) trains, logs and
    validates its tasks apart from the same pair in data.corpus ("...@<corpus name>")."""
    second = tmp_path / "second"
    shutil.copytree(workspace.corpus, second)
    objectives = [{"type": "distill", "langs": ["fr"]},
                  {"type": "distill", "langs": ["fr"], "corpus": str(second), "max_examples": 5}]
    cfg = _config(workspace, tmp_path, workspace.laser, objectives=objectives,
                  trainer={"max_steps": 30, "save_every": 0, "valid_every": 30})
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = {k for r in rows for k in r if k.startswith("cos/")}
    assert {"cos/distill-fr-en", "cos/distill-fr-en@second", "cos/distill-en-en@second"} <= logged, logged
    valid = json.loads((tmp_path / "run" / "summary.json").read_text())["valid"]
    assert {"p1/en-fr", "p1/en-fr@second"} <= set(valid), valid
    assert valid["p1/avg"] == pytest.approx((valid["p1/en-fr"] + valid["p1/en-fr@second"]) / 2)
    # a third corpus of the same directory name would share those names: refused, naming the task
    clash = tmp_path / "elsewhere" / "second"
    shutil.copytree(workspace.corpus, clash)
    cfg = _config(workspace, tmp_path, workspace.laser, "clash.yaml",
                  objectives=[*objectives, {"type": "distill", "langs": ["fr"], "corpus": str(clash)}])
    with pytest.raises(XlingError, match=r"distill-\w\w-en@second comes twice"):
        run_training(load_config(TrainConfig, cfg), tmp_path / "clash")
