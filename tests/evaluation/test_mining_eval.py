"""Mining evaluation: BUCC-style sets and F1 with a dev threshold, Tatoeba-style P@1 and
xSIM error, signatures, the histogram, ``xling evaluate mining``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import FakeEncoder, stub_encoder
from xling.cli import main
from xling.errors import XlingError
from xling.evaluation.mining import (best_threshold, bucc_sets, evaluate_bucc, evaluate_mining, evaluate_tatoeba,
                                     plot_margin_histogram, text_ids)


def parallel(n=900, d=32, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)).astype(np.float32)
    return a, (a + noise * rng.normal(size=(n, d))).astype(np.float32)


def test_bucc_sets_hide_gold_among_one_sided_distractors():
    sets = bucc_sets(1000, distractors=4, dev_fraction=0.5, seed=3)
    for s in sets.values():
        g = len(s.gold)
        assert g == 500 // 9 and len(s.src_rows) == len(s.tgt_rows) == 5 * g
        assert (s.src_rows[s.gold[:, 0]] == s.tgt_rows[s.gold[:, 1]]).all()
        assert len(np.intersect1d(s.src_rows, s.tgt_rows)) == g  # distractors have no translation on the other side
    assert not np.intersect1d(sets["dev"].src_rows, sets["test"].src_rows).size
    with pytest.raises(XlingError, match="too few"):
        bucc_sets(10, distractors=4)


def test_best_threshold_by_hand():
    scores = np.array([1.9, 1.8, 1.5, 1.5, 1.2, 1.1])
    hit = np.array([1, 1, 0, 1, 0, 1], dtype=bool)
    # keep 2: P 1, R 2/4 -> F1 .6667; keep 4 (tie group): P 3/4, R 3/4 -> .75; keep 6: P 4/6, R 1 -> .8
    r = best_threshold(scores, hit, n_gold=4)
    assert r["f1"] == pytest.approx(0.8) and r["threshold"] == 1.1
    hit[5] = False  # the last pair is wrong, so one gold pair is never mined: keep 4 (tie group) -> 2*3/(4+4) = .75
    r = best_threshold(scores, hit, n_gold=4)
    assert r["f1"] == pytest.approx(0.75) and r["threshold"] == pytest.approx((1.5 + 1.2) / 2)  # halfway to the next score
    assert best_threshold(scores, np.zeros(6, dtype=bool), 4)["threshold"] is None


def test_bucc_f1_on_noisy_copies_is_perfect():
    a, b = parallel()
    r, hist = evaluate_bucc(a, b)
    assert r["f1"] == 1.0 and r["precision"] == 1.0 and r["recall"] == 1.0
    assert hist["gold"].min() > r["threshold"] > hist["other"].max()
    assert r["test"]["n_gold"] == 50 and r["test"]["n_src"] == 250


def test_bucc_f1_when_half_the_gold_pairs_are_not_translations():
    a, b = parallel(1800)
    broken = np.random.default_rng(1).random(len(a)) < 0.5
    b[broken] = np.random.default_rng(2).normal(size=(broken.sum(), a.shape[1]))  # unrelated "translations"
    r, _ = evaluate_bucc(a, b)
    test = bucc_sets(1800)["test"]
    findable = (~broken[test.src_rows[test.gold[:, 0]]]).sum()
    # precision stays 1 (the threshold keeps only the real ones), recall = findable share
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(findable / len(test.gold))
    assert r["f1"] == pytest.approx(2 * r["recall"] / (1 + r["recall"]))


def test_tatoeba_p_at_1_and_xsim_error():
    a, b = parallel(100)
    r = evaluate_tatoeba(a, b)
    assert r["p_at_1_src2tgt"] == r["p_at_1_tgt2src"] == 1.0 and r["xsim_error_src2tgt"] == 0.0
    b2 = b.copy()
    b2[:10] = np.random.default_rng(1).normal(size=(10, 32))  # targets 0..9 replaced by unrelated vectors
    r = evaluate_tatoeba(a, b2, margin="absolute")  # so sources 0..9 have no translation left
    assert r["p_at_1_src2tgt"] == pytest.approx(0.9) and r["xsim_error_src2tgt"] == pytest.approx(0.1)
    a2, b2 = a.copy(), b.copy()
    a2[:10], b2[:10] = a[10:20], b[10:20]  # rows 0..9 repeat rows 10..19 on both sides (duplicate sentences)
    ids = np.concatenate([np.arange(10, 20), np.arange(10, 100)])  # equal texts, equal ids: either copy is right
    r = evaluate_tatoeba(a2, b2, src_ids=ids, tgt_ids=ids, margin="absolute")
    assert r["p_at_1_src2tgt"] == r["p_at_1_tgt2src"] == 1.0
    assert r["signature"].startswith("xling-mining-tatoeba|model:embeddings|data:") and "|k:4|margin:absolute|index:Flat|" in r["signature"]


def test_text_ids():
    assert text_ids(["a", "b", "a", "c", "b"]).tolist() == [0, 1, 0, 3, 1]


def test_signatures_and_histogram(tmp_path):
    a, b = parallel()
    r, hist = evaluate_mining(a, b, model="m1", data="d1", split="test", index="IVF4,Flat", nprobe=2, seed=7)
    assert r["bucc"]["signature"].startswith(
        "xling-mining-bucc|model:m1|data:d1|split:test|seed:7|distractors:4|dev:0.5|k:4|margin:ratio|mode:max|index:IVF4,Flat|nprobe:2|v:")
    plot_margin_histogram(hist["gold"], hist["other"], r["bucc"]["threshold"], tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluate_mining(tmp_path, capsys):
    a, b = parallel()
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    rc = main(["evaluate", "mining", "--src-emb", str(tmp_path / "a.npy"), "--tgt-emb", str(tmp_path / "b.npy"),
               "--name", "xx-yy", "--out", str(tmp_path / "r.json"), "--plot", str(tmp_path / "h.png")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| xx-yy | 1.0000 | 1.0000 |" in out and "xling-mining-bucc|" in out
    r = json.loads((tmp_path / "r.json").read_text())["pairs"]["xx-yy"]
    assert r["bucc"]["f1"] == 1.0 and r["tatoeba"]["n"] == 900 and (tmp_path / "h.png").is_file()
    np.save(tmp_path / "c.npy", b[:-1])
    assert main(["evaluate", "mining", "--src-emb", str(tmp_path / "a.npy"), "--tgt-emb", str(tmp_path / "c.npy")]) == 2
    assert "aligned embeddings needed" in capsys.readouterr().err


class _NoEncoding(FakeEncoder):
    """A sentence encoder stub that fails the test when it encodes anything."""

    def encode(self, *args, **kw):
        pytest.fail("sentences were encoded before the sizes and settings were checked")


@pytest.mark.parametrize("n,kw,match", [
    (18, {"k": 6}, "de-en BUCC dev target: 5 sentences, fewer than the k=6"),
    (10, {}, "too few for BUCC-style dev and test sets"),
    (40, {"index": "IVF64,Flat"}, "too few to train faiss index 'IVF64,Flat'"),
    (40, {"tgt_lang": "xx"}, "unknown language 'xx'"),
])
def test_model_evaluation_checks_before_encoding(monkeypatch, n, kw, match):
    from xling.evaluation.mining import evaluate_mining_model

    stub_encoder(monkeypatch, _NoEncoding)
    langs = {"src_lang": "de", "tgt_lang": kw.pop("tgt_lang", "en")}
    with pytest.raises(XlingError, match=match):
        evaluate_mining_model("M", [f"satz {i}" for i in range(n)], [f"sentence {i}" for i in range(n)], **langs, **kw)
