"""``xling mine-corpus``: the sharded pipeline against ``xling mine`` on the same inputs (exact
index: same pairs, same scores, byte for byte), a run killed by a raising worker or a SIGKILLed
worker process and rerun (same output, only the unfinished units recomputed), a changed setting
(only the stages that depend on it rerun; refused without --force, naming it), bad inputs."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from xling.cli import main
from xling.config import from_dict, to_dict
from xling.errors import XlingError
from xling.mining.pipeline import MineCorpusConfig, auto_index, mine_corpus
from xling.mining.pipeline import units as U
from xling.mining.pipeline.executors import LocalExecutor, RayExecutor, _check_reachable

WORDS = ("the and god earth light heaven water day night said was good made let there be in beginning "
         "form void spirit moved upon face deep darkness divided called evening morning first second").split()
SHARD = 350  # lines per shard: several shards per file, the last ones partial


def _sentences(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 8)))).capitalize() + "." for _ in range(n)]


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> dict:
    """~2000 source lines in two files (duplicates, empty lines) and ~1600 target lines, half of
    them near copies of source lines; plus both source files concatenated for ``xling mine``."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("texts")
    src = _sentences(rng, 1950)
    src += [src[i] for i in rng.integers(0, len(src), 30)] + [""] * 20  # duplicates and empty lines
    rng.shuffle(src)
    tgt = [s.replace(str(rng.choice(WORDS)), str(rng.choice(WORDS)), 1) for s in rng.choice(src, 800)]
    tgt += _sentences(rng, 800) + [tgt[i] for i in range(0, 40, 2)] + ["  "] * 5
    rng.shuffle(tgt)
    files = {"src1": src[:1200], "src2": src[1200:], "src_all": src, "tgt": tgt}
    for name, lines in files.items():
        (d / f"{name}.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
    return {name: d / f"{name}.txt" for name in files}


def _config(workspace, texts, **sections) -> dict:
    data = {"model": str(workspace.laser), "src": {"lang": "en", "files": [str(texts["src1"]), str(texts["src2"])]},
            "tgt": {"lang": "fr", "files": [str(texts["tgt"])]}, "prepare": {"shard_size": SHARD}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def _run(data: dict, out: Path, executor=None, force: bool = False) -> dict:
    return mine_corpus(from_dict(MineCorpusConfig, json.loads(json.dumps(data))), out,
                       executor=executor or LocalExecutor(1), force=force)


def _mine(*argv) -> None:
    assert main(["mine", *map(str, argv), "--quiet"]) == 0


def _records(run: Path) -> dict[str, dict]:
    return {str(p.relative_to(run / "done")): json.loads(p.read_text()) for p in (run / "done").rglob("*.json")}


@pytest.fixture(scope="module")
def reference(workspace, texts, tmp_path_factory) -> Path:
    """An uninterrupted run (float16 embeddings, exact index, mode max)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    summary = _run(_config(workspace, texts), out)
    assert summary["index"] == {"src": "Flat", "tgt": "Flat"} and summary["shards"] == {"src": 7, "tgt": 5}
    return out


def _pipeline_inputs(run: Path, d: Path) -> list:
    """The pipeline's own float16 embeddings and deduplicated texts as ``xling mine`` inputs."""
    from xling.mining.pipeline.embed import side_rows

    argv = []
    for side in ("src", "tgt"):
        emb, lines = side_rows(run, side)
        np.save(d / f"{side}.npy", emb)
        (d / f"{side}.txt").write_text("".join(t + "\n" for t in lines), encoding="utf-8")
        argv += [f"--{side}-emb", d / f"{side}.npy", f"--{side}", d / f"{side}.txt"]
    return argv


def _ran(summary: dict) -> set[str]:
    return {stage for stage, keys in summary["ran"].items() if keys}


def test_equals_xling_mine_on_its_embeddings(workspace, texts, reference, tmp_path):
    """Search, scores, selection and extraction: ``xling mine`` on the pipeline's own float16
    embeddings and deduplicated texts writes the same TSV, byte for byte; so do other modes,
    margins, a threshold and an IVF index, each rerunning only the stages that depend on it."""
    inputs = _pipeline_inputs(reference, tmp_path)
    _mine(*inputs, "--out", tmp_path / "ref.tsv")
    got = (reference / "pairs.tsv").read_bytes()
    assert got == (tmp_path / "ref.tsv").read_bytes() and got.count(b"\n") > 300
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    variants = [({"mining": {"mode": "intersection", "threshold": 1.0}}, {"select", "extract"},
                 ["--mode", "intersection", "--threshold", "1.0"]),
                ({"mining": {"mode": "forward", "margin": "distance"}}, {"score", "select", "extract"},
                 ["--mode", "forward", "--margin", "distance"]),
                ({"index": {"type": "IVF8,Flat", "nprobe": 3}, "mining": {"mode": "backward"}},
                 {"train", "add", "merge", "search", "means", "score", "select", "extract"},
                 ["--index", "IVF8,Flat", "--nprobe", "3", "--mode", "backward"]),
                # an index faiss cannot merge (fast-scan lists: faiss 1.15 corrupts memory): no add
                # units, the merge stage adds the shards' vectors in order
                ({"index": {"type": "IVF8,PQ8x4fs", "nprobe": 3}}, {"train", "merge", "search", "means", "score",
                                                                    "select", "extract"},
                 ["--index", "IVF8,PQ8x4fs", "--nprobe", "3"])]
    for edit, stages, argv in variants:
        summary = _run(_config(workspace, texts, **edit), out, force=True)
        assert _ran(summary) == stages, edit
        _mine(*inputs, *argv, "--out", tmp_path / "ref.tsv")
        assert (out / "pairs.tsv").read_bytes() == (tmp_path / "ref.tsv").read_bytes(), edit


def _pairs(path: Path) -> dict[tuple[str, str], float]:
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
    return {(a, b): float(s) for s, a, b in rows}


def test_equals_xling_mine_with_the_model(workspace, texts, tmp_path):
    """float32 embeddings: the whole pipeline (prepare, dedup, embed in shards ...) finds the pairs
    ``xling mine --model`` finds on the concatenated input files, with the same scores (the encoder
    batches other sentences together, which moves a vector by about one float32 rounding)."""
    out = tmp_path / "run"
    summary = _run(_config(workspace, texts, embed={"dtype": "float32"}), out)
    blank = sum(not t.strip() for f in ("src_all", "tgt") for t in texts[f].read_text(encoding="utf-8").split("\n")[:-1])
    assert summary["stages"]["prepare"]["counts"]["too_short"] == blank > 0
    assert summary["stages"]["dedup"]["counts"]["duplicates"] > 0
    _mine("--model", workspace.laser, "--src", texts["src_all"], "--src-lang", "en", "--tgt", texts["tgt"],
          "--tgt-lang", "fr", "--out", tmp_path / "ref.tsv")
    got, ref = _pairs(out / "pairs.tsv"), _pairs(tmp_path / "ref.tsv")
    assert got.keys() == ref.keys() and len(got) == summary["pairs"] > 300
    assert max(abs(got[p] - ref[p]) for p in got) <= 2e-6


def test_any_encoder_backend_embeds_the_shards(workspace, texts, hf_models, tmp_path):
    """A sentence-transformers directory runs the pipeline: every embedding shard equals the
    backend's own vectors of the shard's kept lines (normalised, as mining uses them), and its
    files are the run's model digest, so a rerun reuses every unit. (The search stages are the
    same for every encoder: proven above against ``xling mine``.)"""
    from xling.embeddings.backends import load_encoder
    from xling.mining.pipeline.prepare import shard_texts

    out = tmp_path / "run"
    data = _config(workspace, texts, embed={"dtype": "float32"})
    data["model"] = str(hf_models.st_bert)
    summary = _run(data, out)
    assert summary["pairs"] > 0
    enc = load_encoder(hf_models.st_bert)
    shards = sorted((out / "embed").rglob("*.npy"))
    assert len(shards) >= 3
    for path in shards:
        side, key = path.parent.name, f"{path.parent.name}/{path.stem}"
        lang = data[side]["lang"]
        want = enc.encode(shard_texts(out, key), lang, normalize=True)  # (n, d)
        assert np.abs(np.load(path) - want).max() <= 1e-6, key
    assert not _ran(_run(data, out))  # nothing recomputed


def test_killed_run_resumes_with_the_same_output(workspace, texts, reference, tmp_path, monkeypatch):
    """A worker raising in the middle of the embed stage; the rerun recomputes the failed unit
    and what follows it, keeps every finished unit's record, and writes the reference output."""
    real = U.STAGES["embed"]

    def flaky(run, unit):
        if unit.key == "src/00003":
            raise RuntimeError("worker lost")
        return real(run, unit)

    from xling.mining.pipeline import stages  # noqa: F401  (registers the stages before patching)
    monkeypatch.setitem(U.STAGES, "embed", flaky)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="worker lost"):
        _run(_config(workspace, texts), out)
    assert not (out / "pairs.tsv").exists()
    before = _records(out)
    assert "embed/src/00003.json" not in before and "embed/src/00004.json" in before  # the others finished
    monkeypatch.setitem(U.STAGES, "embed", real)
    summary = _run(_config(workspace, texts), out)
    assert summary["ran"]["prepare"] == [] and summary["ran"]["dedup"] == []
    assert summary["ran"]["embed"] == ["src/00003"]
    after = _records(out)
    assert all(after[name] == rec for name, rec in before.items())  # finished units were not redone
    assert (out / "pairs.tsv").read_bytes() == (reference / "pairs.tsv").read_bytes()
    ref = _records(reference)
    assert {n: r["digest"] for n, r in after.items()} == {n: r["digest"] for n, r in ref.items()}
    again = _run(_config(workspace, texts), out)  # idempotent: nothing left to do
    assert not any(again["ran"].values())


def _die_in(victim: str, run: str, unit: U.Unit) -> dict:
    """``run_unit`` in a pool worker, except for the unit named ``victim``: once three other units of
    its stage have finished, the worker SIGKILLs itself when the unit renames its first output into
    place (the unit's temporary file is written, the unit is unfinished, nothing else is cleaned up)."""
    import os
    import signal
    import time

    if unit.name == victim:
        done = Path(run) / "done" / unit.stage
        deadline = time.monotonic() + 60
        while len(list(done.glob("*/*.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.replace = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # this process only: it dies
    return U.run_unit(run, unit)


class _KillingExecutor(LocalExecutor):
    """Two worker processes, one of which is SIGKILLed in the middle of the unit ``victim``."""

    def __init__(self, victim: str) -> None:
        super().__init__(2)
        self.victim = victim

    def map(self, fn, items, gpu=False):
        assert fn is U.run_unit
        return super().map(functools.partial(_die_in, self.victim), items, gpu)


@pytest.mark.parametrize("victim", ["embed/src/00003", "search/bwd/00002"])
def test_sigkilled_worker_resumes_with_the_same_output(workspace, texts, reference, tmp_path, victim):
    """A worker process SIGKILLed in the middle of a unit (its temporary output on disk, no record):
    the run stops with one line naming a dead worker; the rerun recomputes exactly the units without
    a record (counted from done/: every other record is left as it was, byte for byte) and writes
    the reference output; the leftover temporary file is never read."""
    out = tmp_path / "run"
    killer = _KillingExecutor(victim)
    try:
        with pytest.raises(XlingError, match=r"a worker died \(BrokenProcessPool.*rerun to resume"):
            _run(_config(workspace, texts), out, executor=killer)
    finally:
        killer.close()
    stage = victim.split("/")[0]
    before = {name: (out / "done" / name).read_bytes() for name in _records(out)}
    finished = [n for n in before if n.startswith(f"{stage}/")]
    assert f"{victim}.json" not in before and len(finished) >= 3  # killed in the middle of its stage
    assert list(out.rglob("*.tmp"))  # the dead unit's half-done output
    assert not (out / "pairs.tsv").exists()
    summary = _run(_config(workspace, texts), out)
    after = {name: (out / "done" / name).read_bytes() for name in _records(out)}
    recomputed = {n for n in after if after[n] != before.get(n)}
    assert recomputed == set(after) - set(before) and f"{victim}.json" in recomputed
    assert {f"{s}/{k}.json" for s, keys in summary["ran"].items() for k in keys} == recomputed
    assert summary["stages"][stage]["computed"] == summary["stages"][stage]["units"] - len(finished)
    assert (out / "pairs.tsv").read_bytes() == (reference / "pairs.tsv").read_bytes()
    ref = _records(reference)
    assert {n: r["digest"] for n, r in _records(out).items()} == {n: r["digest"] for n, r in ref.items()}


def test_changed_filter_reruns_only_extraction(workspace, texts, reference, tmp_path):
    rows = [line.split("\t") for line in (reference / "pairs.tsv").read_text(encoding="utf-8").splitlines()]
    scores = sorted({float(r[0]) for r in rows})
    low = (scores[len(scores) // 2] + scores[len(scores) // 2 + 1]) / 2  # halfway between two printed scores
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    data = _config(workspace, texts, filters={"min_score": low, "max_len_ratio": 1.5, "drop_identical": True})
    with pytest.raises(XlingError, match=rf"filters.min_score: None -> {low}"):
        _run(data, out)
    summary = _run(data, out, force=True)
    assert _ran(summary) == {"extract"}
    counts = summary["stages"]["extract"]["counts"]
    assert counts["selected"] == len(rows)

    def kept(score, a, b):
        la, lb = len(a.strip()), len(b.strip())
        return (float(score) >= low and a.strip().casefold() != b.strip().casefold()
                and max(la, lb) <= 1.5 * max(min(la, lb), 1))

    expect = [r for r in rows if kept(*r)]
    assert 0 < len(expect) < len(rows) and counts["score_window"] > 0 and counts["len_ratio"] > 0
    assert (out / "pairs.tsv").read_text(encoding="utf-8") == "".join("\t".join(r) + "\n" for r in expect)
    assert summary["pairs"] == len(expect)


def test_local_processes_and_ray_give_identical_output(workspace, texts, reference, tmp_path):
    """Two worker processes (concurrent.futures) and a local Ray instance: the same files as the
    in-process reference run, record for record."""
    ref = {n: r["digest"] for n, r in _records(reference).items()}
    pool = LocalExecutor(2)
    try:
        _run(_config(workspace, texts), tmp_path / "pool", executor=pool)
    finally:
        pool.close()
    ray = RayExecutor(workers=2)
    try:
        _run(_config(workspace, texts), tmp_path / "ray", executor=ray)
        _check_reachable(ray._ray.get_runtime_context().gcs_address, 2)  # a live Ray answers the probe
    finally:
        ray.close()
    for name in ("pool", "ray"):
        assert (tmp_path / name / "pairs.tsv").read_bytes() == (reference / "pairs.tsv").read_bytes()
        assert {n: r["digest"] for n, r in _records(tmp_path / name).items()} == ref


# ----------------------------------------------------------------------------- bad input


def test_invalid_utf8_shard_is_named_and_the_others_finish(workspace, texts, tmp_path):
    bad = tmp_path / "bad.txt"
    lines = texts["src2"].read_bytes().split(b"\n")
    lines[500] = b"caf\xe9 au lait"
    bad.write_bytes(b"\n".join(lines))
    data = _config(workspace, texts)
    data["src"]["files"] = [str(texts["src1"]), str(bad)]
    out = tmp_path / "run"
    pool = LocalExecutor(2)  # worker processes
    try:
        with pytest.raises(XlingError, match=rf"^{bad}:501: invalid UTF-8 .*1 of 12 prepare units failed"):
            _run(data, out, executor=pool)
    finally:
        pool.close()
    done = sorted(_records(out))
    assert done == sorted(f"prepare/{s}.json" for s in [*(f"src/{i:05d}" for i in range(7) if i != 5),
                                                       *(f"tgt/{i:05d}" for i in range(5))])
    bad.write_bytes(texts["src2"].read_bytes())  # fixed: only that file's shards are read again
    summary = _run(data, out)
    assert summary["ran"]["prepare"] == ["src/00004", "src/00005", "src/00006"]


def test_disk_too_small_is_refused_before_anything_is_written(workspace, texts, tmp_path, monkeypatch):
    import collections

    from xling.mining.pipeline import run as R

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(R.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(XlingError, match=r"0.00 GB free on its disk, but the planned embeddings need about"):
        _run(_config(workspace, texts), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_ray_address_that_does_not_answer():
    """A closed port, and a port that accepts connections but never answers: one line, within the timeout."""
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(XlingError, match=rf"^Ray address 127.0.0.1:{port}: no answer within 2 s"):
        RayExecutor(address=f"127.0.0.1:{port}", timeout=2)
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(1)
        port = mute.getsockname()[1]
        start = time.perf_counter()
        with pytest.raises(XlingError, match=rf"^Ray address ray://127.0.0.1:{port}: no answer within 1 s"):
            RayExecutor(address=f"ray://127.0.0.1:{port}", timeout=1)
        assert time.perf_counter() - start < 3


@pytest.mark.parametrize("edit,message", [
    ({"mining": {"mode": "maxx"}}, "unknown mode 'maxx'; did you mean 'max'"),
    ({"prepare": {"shard_size": 0}}, "config prepare.shard_size: must be at least 1"),
    ({"prepare": {"normalize": "NFX"}}, "unknown config prepare.normalize 'NFX'"),
    ({"filters": {"min_score": 1.3, "max_score": 1.1}}, "min_score 1.3 is above max_score 1.1"),
    ({"embed": {"dtype": "int8"}}, "unknown config embed.dtype 'int8'"),
    ({"mining": {"k": 5000}}, "fewer than the k=5000 neighbours"),
    ({"index": {"type": "IVF4096,Flat"}}, "too few to train faiss index 'IVF4096,Flat'"),
    ({"index": {"type": "Nonsense12"}}, "faiss index 'Nonsense12'"),
    ({"src": {"lang": "de"}}, "language 'de': this sentence encoder was not trained"),
    ({"src": {"files": []}}, "config src.files: give at least one text file"),
])
def test_config_errors(workspace, texts, tmp_path, edit, message):
    data = _config(workspace, texts, **edit)
    with pytest.raises(XlingError, match=message):
        _run(data, tmp_path / "run")
    assert not (tmp_path / "run" / "embed").exists()  # refused before anything was encoded


def test_changed_model_is_refused_without_force(workspace, texts, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(workspace.laser, model)
    data = _config(workspace, texts, prepare={"shard_size": 2000})
    data["model"], data["src"]["files"] = str(model), [str(texts["src2"])]
    _run(data, tmp_path / "run")
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(cfg, indent=1))  # same model, other bytes: other files
    with pytest.raises(XlingError, match=r"changed since its last run: model files \(sha256"):
        _run(data, tmp_path / "run")
    summary = _run(data, tmp_path / "run", force=True)
    assert summary["ran"]["prepare"] == [] and summary["ran"]["embed"] == ["src/00000", "tgt/00000"]


def test_langid_and_length_limits(workspace, tmp_path):
    src = ["The cat sleeps on the warm windowsill all afternoon.", "Le chat dort sur le rebord de la fenêtre.",
           "A very long line " + "word " * 60, "Birds sing in the garden every morning.", "ok",
           "Cafe\u0301 opens early on Sundays in this small town."]
    tgt = ["Les oiseaux chantent dans le jardin chaque matin.", "The dog barks at night in the quiet street.",
           "Le café ouvre tôt le dimanche dans cette petite ville.", "Il pleut souvent en automne ici."]
    (tmp_path / "en.txt").write_text("\n".join(src) + "\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    data = {"model": str(workspace.laser), "src": {"lang": "en", "files": [str(tmp_path / "en.txt")]},
            "tgt": {"lang": "fr", "files": [str(tmp_path / "fr.txt")]},
            "prepare": {"min_chars": 3, "max_chars": 200, "langid": True}, "mining": {"k": 2}}
    summary = _run(data, tmp_path / "run")
    counts = summary["stages"]["prepare"]["counts"]
    assert (counts["too_short"], counts["too_long"], counts["wrong_lang"]) == (1, 1, 2)
    assert summary["sentences"] == {"src": 3, "tgt": 3}
    kept = (tmp_path / "run" / "prepare" / "src" / "00000.txt").read_text(encoding="utf-8")
    assert "Caf\u00e9 opens" in kept  # NFC: e + combining acute -> é


def test_auto_index_by_size():
    assert auto_index(5000, 1024) == "Flat"
    assert auto_index(5_000_000, 1024) == "IVF8192,Flat"
    assert auto_index(50_000_000, 1024) == "OPQ64,IVF65536,PQ64"
    assert auto_index(2_000_000_000, 1024) == "OPQ64,IVF262144,PQ64"
    assert auto_index(50_000_000, 300) == "OPQ60,IVF65536,PQ60"


def test_cli_writes_the_manifest(workspace, texts, reference, tmp_path, capsys):
    import yaml

    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(_config(workspace, texts)), encoding="utf-8")
    out = tmp_path / "run"
    shutil.copytree(reference, out)  # a finished run: the command resumes it (nothing left to compute)
    (out / "manifest.json").unlink()
    assert main(["mine-corpus", "--config", str(config), "--out", str(out), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert f"{manifest['pairs']} pairs -> {out / 'pairs.tsv'}" in err and "embed" in err
    assert manifest["stages"]["embed"]["rows"] == sum(manifest["sentences"].values())
    assert manifest["config"] == to_dict(from_dict(MineCorpusConfig, _config(workspace, texts)))
    assert (out / "pairs.tsv").read_bytes() == (reference / "pairs.tsv").read_bytes()
