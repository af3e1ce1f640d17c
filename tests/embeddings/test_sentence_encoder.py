"""Sentence embedders: pooling, the ranking loss by hand, padding invariance,
languages, save/load, decoding, learning a tiny parallel task, ``xling embed`` and
``xling train`` with ``model_type: sentence`` (resume included)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xling.cli import main
from xling.config import load_config
from xling.embeddings import SentenceEmbedder, SentenceEmbedderConfig, SentenceEncoder
from xling.embeddings.decoding import EmbeddingStepDecoder
from xling.models.pooling import pool
from xling.errors import XlingError
from xling.generation.base import GenerationConfig
from xling.generation.search import generate
from xling.models.config import EncoderConfig
from xling.models.encoder import TransformerEncoder
from xling.objectives.seq2seq import Seq2SeqObjective
from xling.objectives.sentence import TranslationRankingObjective, duplicates, ranking_loss
from xling.tasks import train as pretrain
from xling.tasks.train import TrainConfig
from xling.objectives.sentence import SentenceConfig as SentenceSpec
from xling.objectives.sentence import directions
from xling.tasks.sentence import p_at_1, trained_languages
from xling.tokenization.vocab import Vocab


@pytest.fixture(scope="module")
def workdir(workspace):
    """The workspace's Bible en-fr corpus and vocabulary (read only)."""
    return workspace.root


@pytest.fixture(scope="module")
def vocab(workdir):
    return Vocab.load(workdir / "vocab")


def _lines(workdir, name, n=None):
    return (workdir / "corpus" / name).read_text(encoding="utf-8").splitlines()[:n]


def tiny_config(vocab, encoder="lstm", pooling="max", **kw) -> SentenceEmbedderConfig:
    base = dict(vocab_size=len(vocab), n_langs=len(vocab.languages), emb_dim=32, hidden=16, n_layers=2,
                dec_emb_dim=32, dec_hidden=32, dropout=0.0, pooling=pooling)
    if encoder == "transformer":
        base.update(encoder="transformer", transformer=EncoderConfig(
            vocab_size=len(vocab), n_langs=len(vocab.languages), d_model=32, n_layers=2, n_heads=4, d_ff=64,
            max_positions=160, dropout=0.0, attn_dropout=0.0))
    return SentenceEmbedderConfig(**{**base, **kw})


def tiny_encoder(vocab, seed=0, **kw) -> SentenceEncoder:
    torch.manual_seed(seed)
    return SentenceEncoder(SentenceEmbedder(tiny_config(vocab, **kw)), vocab, ["en", "fr"], ["en"], max_len=60)


# ---------------------------------------------------------------- pure pieces, by hand


def test_pooling_excludes_padding_by_hand():
    h = torch.tensor([[[1.0, -1.0], [3.0, -5.0], [100.0, 100.0]],
                      [[-2.0, -7.0], [-4.0, -3.0], [-1.0, -9.0]]])  # (2, 3, 2); row 0's last position is padding
    real = torch.tensor([[True, True, False], [True, True, True]])
    assert pool(h, real, "max").tolist() == [[3.0, -1.0], [-1.0, -3.0]]
    torch.testing.assert_close(pool(h, real, "mean"), torch.tensor([[2.0, -3.0], [-7 / 3, -19 / 3]]))
    assert pool(h, real, "cls").tolist() == [[1.0, -1.0], [-2.0, -7.0]]


def test_ranking_loss_equals_a_hand_computation():
    # cosines s = [[1, .6], [0, .8]]; scale 2, margin .5 -> logits [[1, 1.2], [0, .6]]
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([[2.0, 0.0], [0.6, 0.8]])  # norms 2 and 1: the loss normalises
    rows = [math.log(math.e + math.exp(1.2)) - 1, math.log(1 + math.exp(0.6)) - 0.6]  # 0.79814, 0.43749
    cols = [math.log(math.e + 1) - 1, math.log(math.exp(1.2) + math.exp(0.6)) - 0.6]  # 0.31326, 1.03749
    loss, stats = ranking_loss(x, y, scale=2.0, margin=0.5)
    assert loss.item() == pytest.approx(0.6465941, abs=1e-6)
    assert loss.item() == pytest.approx((sum(rows) / 2 + sum(cols) / 2) / 2, abs=1e-6)
    assert stats["acc"] == 0.5  # row 0 prefers y_1 (1.2 > 1), column 1 prefers x_0
    exclude = torch.tensor([[False, True], [False, False]])  # s_01 is a duplicate, not a negative
    loss, stats = ranking_loss(x, y, scale=2.0, margin=0.5, exclude=exclude)
    assert loss.item() == pytest.approx(((0 + rows[1]) / 2 + (cols[0] + 0) / 2) / 2, abs=1e-6)  # 0.18769
    assert stats["acc"] == 1.0


def test_duplicates_mark_same_texts_off_the_diagonal():
    d = duplicates([[5, 6], [7], [5, 6]], [[1], [2], [3]])
    assert d.tolist() == [[False, False, True], [False, False, False], [True, False, False]]


def test_directions_expand_languages_into_pivots():
    one, two = SentenceSpec(pivots=["en"]), SentenceSpec(pivots=["en", "fr"])
    assert directions("laser_translation", ["de", "fr", "en"], one) == ["de-en", "fr-en", "en-en"]
    assert directions("laser_translation", ["de", "en"], SentenceSpec(pivots=["en"], autoencode=False)) == ["de-en"]
    assert directions("laser_translation", ["de", "en", "fr"], two) == ["de-en", "de-fr", "en-fr", "fr-en"]
    assert directions("translation_ranking", ["de", "en", "fr"], two) == ["de-en", "de-fr", "en-fr"]
    objs = [type("O", (), {"type": "laser_translation", "langs": ["de", "en"]})(),
            type("O", (), {"type": "translation_ranking", "langs": ["zh"]})()]
    assert trained_languages(objs, one) == {"languages": ["de", "en", "zh"], "target_languages": ["en"]}


# ---------------------------------------------------------------- encoding


@pytest.mark.parametrize("encoder,pooling", [("lstm", "max"), ("lstm", "mean"), ("transformer", "max"),
                                             ("transformer", "mean"), ("transformer", "cls")])
def test_padding_does_not_leak(workdir, vocab, encoder, pooling):
    enc = tiny_encoder(vocab, encoder=encoder, pooling=pooling)
    texts = _lines(workdir, "train.en", 12) + ["In the beginning."]
    batched = enc.encode(texts, "en", batch_size=5)
    alone = np.concatenate([enc.encode([t], "en") for t in texts])
    assert batched.dtype == np.float32 and batched.shape == (len(texts), enc.dim)
    np.testing.assert_allclose(batched, alone, atol=1e-5, rtol=0)
    # the short sentence next to the longest one, in either order
    pair = enc.encode([texts[-1], max(texts, key=len)], "en")
    np.testing.assert_allclose(pair[0], alone[-1], atol=1e-5, rtol=0)


def test_encode_keeps_input_order_normalizes_and_zeroes_empty_lines(workdir, vocab):
    enc = tiny_encoder(vocab)
    texts = _lines(workdir, "train.fr", 6)
    texts.insert(2, "   ")
    out = enc.encode(texts, "fr", batch_size=2, normalize=True)
    assert not out[2].any()
    np.testing.assert_allclose(np.linalg.norm(out[[0, 1, 3, 4, 5, 6]], axis=1), 1.0, atol=1e-6)
    raw = enc.encode(texts[::-1], "fr")[::-1]  # reversed input, reversed back
    np.testing.assert_allclose(raw / np.maximum(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12), out, atol=1e-5)
    assert enc.encode([], "fr").shape == (0, enc.dim)


def test_unknown_language_is_rejected(vocab):
    enc = tiny_encoder(vocab)
    enc.languages = ["en"]  # trained on English only, although the vocabulary also has fr
    with pytest.raises(XlingError, match=r"language 'fr'.*known: en\)"):
        enc.encode(["Bonjour."], "fr")
    with pytest.raises(XlingError, match="'xx'"):
        enc.encode(["x"], "xx")
    with pytest.raises(XlingError, match=r"decode into it \(known: en\)"):
        enc.decode(np.zeros((1, enc.dim), np.float32), "fr")
    with pytest.raises(XlingError, match="expected"):
        enc.decode(np.zeros((1, enc.dim + 1), np.float32), "en")


@pytest.mark.parametrize("encoder", ["lstm", "transformer"])
def test_save_load_gives_bit_exact_embeddings(workdir, vocab, tmp_path, encoder):
    enc = tiny_encoder(vocab, encoder=encoder)
    texts = _lines(workdir, "valid.en", 8)
    enc.save_pretrained(tmp_path / "m")
    back = SentenceEncoder.from_pretrained(tmp_path / "m")
    assert back.languages == ["en", "fr"] and back.target_languages == ["en"] and back.max_len == 60
    assert np.array_equal(enc.encode(texts, "en"), back.encode(texts, "en"))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["model_type"] == "sentence_embedder" and meta["extra"]["sentence"]["languages"] == ["en", "fr"]
    # a directory that does not record its languages is refused
    enc.model.save_pretrained(tmp_path / "bare", vocab=vocab)
    with pytest.raises(XlingError, match="records no training languages"):
        SentenceEncoder.from_pretrained(tmp_path / "bare")


# ---------------------------------------------------------------- decoding


def test_step_decoder_equals_the_teacher_forced_forward(vocab):
    torch.manual_seed(1)
    model = SentenceEmbedder(tiny_config(vocab, dec_layers=2)).eval()
    src = torch.tensor([[2, 40, 41, 42, 3], [2, 50, 3, 0, 0]])
    dec = torch.tensor([[2, 7, 8, 9], [2, 11, 12, 13]])  # <s> y
    lang = vocab.lang_id("en")
    with torch.no_grad():
        emb = model(src)  # (2, D)
        full = torch.log_softmax(model.lm_logits(model(src, dec_tokens=dec, dec_langs=torch.full_like(dec, lang))), -1)
    step = EmbeddingStepDecoder(model, emb, lang)
    for t in range(dec.shape[1]):
        torch.testing.assert_close(step.step(dec[:, t]), full[:, t], atol=1e-5, rtol=0)
    # reorder follows rows: keep row 1 twice, then step on
    step = EmbeddingStepDecoder(model, emb, lang)
    step.step(dec[:, 0])
    step.reorder(torch.tensor([1, 1]))
    torch.testing.assert_close(step.step(dec[[1, 1], 1]), full[[1, 1], 1], atol=1e-5, rtol=0)


def test_greedy_and_beam_decode_embeddings(vocab):
    enc = tiny_encoder(vocab)
    emb = enc.encode(["In the beginning.", "And God said."], "en")
    for beam in (1, 3):
        out = enc.decode(emb, "en", beam=beam, max_len=6)
        assert len(out) == 2 and all(isinstance(o, str) for o in out)
    dec = EmbeddingStepDecoder(enc.model, torch.from_numpy(emb), vocab.lang_id("en"))
    hyps = generate(dec, [0, 0], GenerationConfig(beam=2, max_len_a=0, max_len_b=5), vocab.bos_id, vocab.eos_id,
                    vocab.pad_id)
    assert all(1 <= len(h[0].tokens) <= 5 for h in hyps)


# ---------------------------------------------------------------- learning


def test_learns_a_tiny_parallel_task(workdir, vocab):
    """Translation through the bottleneck + ranking on 40 en-fr verse pairs: both losses drop and
    nearest-neighbour retrieval of the training pairs beats chance (1/40) by far."""
    fr, en = _lines(workdir, "train.en-fr.fr", 40), _lines(workdir, "train.en-fr.en", 40)
    pairs = [(np.array(a[:24]), np.array(b[:24])) for a, b in zip(vocab.encode_batch(fr), vocab.encode_batch(en))]
    ids = (vocab.lang_id("fr"), vocab.lang_id("en"))
    torch.manual_seed(0)
    model = SentenceEmbedder(tiny_config(vocab))
    rank, mt = TranslationRankingObjective(scale=10.0, margin=0.2), Seq2SeqObjective(label_smoothing=0.0)
    rng = np.random.default_rng(0)
    rb, tb = rank.make_batch(pairs, ids, rng), mt.make_batch(pairs, ids, rng)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = last = None
    for _ in range(30):
        opt.zero_grad()
        lr_, _ = rank.loss(model, rb)
        lt, _ = mt.loss(model, tb)
        (lr_ + lt).backward()
        opt.step()
        first = first or (lr_.item(), lt.item())
        last = (lr_.item(), lt.item())
    assert last[0] < 0.5 * first[0] and last[1] < 0.8 * first[1], (first, last)
    enc = SentenceEncoder(model, vocab, ["en", "fr"], ["en"], max_len=24)
    x = torch.from_numpy(enc.encode(fr, "fr"))
    y = torch.from_numpy(enc.encode(en, "en"))
    p_fr_en, p_en_fr = p_at_1(x, y)
    assert min(p_fr_en, p_en_fr) > 0.5, (p_fr_en, p_en_fr)


def test_a_trained_embedder_decodes_its_embeddings_back_to_text(vocab):
    """Three fr -> en pairs learnt by heart through the bottleneck: greedy and beam decoding of
    the French embeddings give the English sentences."""
    fr, en = ["Au commencement.", "Dieu dit.", "Et la terre."], ["In the beginning.", "God said.", "And the earth."]
    pairs = [(np.array(a), np.array(b)) for a, b in zip(vocab.encode_batch(fr), vocab.encode_batch(en))]
    torch.manual_seed(0)
    model = SentenceEmbedder(tiny_config(vocab, dec_hidden=64, n_layers=1))
    mt = Seq2SeqObjective(label_smoothing=0.0)
    batch = mt.make_batch(pairs, (vocab.lang_id("fr"), vocab.lang_id("en")), np.random.default_rng(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss, _ = mt.loss(model, batch)
        loss.backward()
        opt.step()
        if loss.item() < 0.03:
            break
    enc = SentenceEncoder(model, vocab, ["fr"], ["en"])
    assert enc.translate(fr, "fr", "en", beam=1, max_len=20) == en
    assert enc.decode(enc.encode(fr, "fr"), "en", beam=3, max_len=20) == en
    assert enc.translate(["", fr[1]], "fr", "en") == ["", en[1]]


# ---------------------------------------------------------------- xling embed


def test_embed_cli_writes_rows_in_input_order(workdir, vocab, tmp_path, capsys):
    enc = tiny_encoder(vocab)
    enc.save_pretrained(tmp_path / "m")
    lines = _lines(workdir, "test.en", 9)
    lines.insert(4, "")
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    want = enc.encode(lines, "en", normalize=True)
    for extra in ([], ["--mmap", "--chunk", "3"]):
        out = tmp_path / f"x{len(extra)}.npy"
        rc = main(["embed", "--model", str(tmp_path / "m"), "--lang", "en", "--input", str(tmp_path / "in.txt"),
                   "--out", str(out), "--normalize", "--batch-size", "4", "--quiet", *extra])
        assert rc == 0
        got = np.load(out)
        assert got.shape == (10, enc.dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        assert not got[4].any()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    assert "1 of 10 lines are empty" in capsys.readouterr().err


def test_embed_cli_errors_are_one_line(vocab, tmp_path, capsys):
    enc = tiny_encoder(vocab)
    enc.save_pretrained(tmp_path / "m")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe broken\n")
    (tmp_path / "ok.txt").write_text("Hello.\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    cases = [(["--input", str(tmp_path / "bad.txt"), "--lang", "en"], "bad.txt:2: invalid UTF-8"),
             (["--input", str(tmp_path / "ok.txt"), "--lang", "de"], "'de'"),
             (["--input", str(tmp_path / "empty.txt"), "--lang", "en"], "no lines to embed")]
    for args, match in cases:
        rc = main(["embed", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o.npy"), "--quiet", *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].startswith("xling: error:") and match in err[-1], err
        assert not (tmp_path / "o.npy").exists()


# ---------------------------------------------------------------- xling train


def _train_config(workdir, tmp_path, **over) -> Path:
    cfg = {
        "model_type": "sentence",
        "data": {"corpus": str(workdir / "corpus"), "vocab": str(workdir / "vocab"), "max_len": 30,
                 "max_tgt_len": 30, "max_tokens": 512, "valid_examples": 16},
        "sentence": {"pivots": ["en"], "margin": 0.2, "scale": 10.0},
        "objectives": [{"type": "laser_translation", "langs": ["fr", "en"], "weight": 1.0},
                       {"type": "translation_ranking", "langs": ["fr"], "weight": 1.0}],
        "model": {"emb_dim": 32, "hidden": 16, "n_layers": 1, "dec_emb_dim": 32, "dec_hidden": 32, "dropout": 0.1},
        "trainer": {"lr": 3e-3, "warmup_steps": 1, "max_steps": 4, "log_every": 1, "valid_every": 0,
                    "save_every": 2, "seed": 0, "progress": False},
        **over,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_xling_train_sentence_model_and_resume(workdir, tmp_path):
    cfg_path = _train_config(workdir, tmp_path)
    assert main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["steps"] == 4
    assert {"ce/laser_translation-fr-en", "ce/laser_translation-en-en", "p1/en-fr", "p1/avg"} <= set(summary["valid"])
    enc = SentenceEncoder.from_pretrained(tmp_path / "a" / "model")
    assert enc.languages == ["en", "fr"] and enc.target_languages == ["en"]
    assert enc.encode(["Au commencement."], "fr").shape == (1, 32)
    # interrupted after step 2, resumed: the same losses and weights as the uninterrupted run
    cfg = load_config(TrainConfig, cfg_path)
    pretrain.run_training(cfg, tmp_path / "b", stop_after=2)
    assert main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "b"), "--resume"]) == 0

    def losses(run):
        return [m["loss"] for m in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "lr" in m]

    assert losses(tmp_path / "a") == losses(tmp_path / "b") and len(losses(tmp_path / "a")) == 4
    ma, mb = (SentenceEmbedder.from_pretrained(tmp_path / r / "model").state_dict() for r in "ab")
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_transformer_embedder_starts_from_an_xlm_encoder(workdir, vocab, tmp_path):
    torch.manual_seed(0)
    xlm = TransformerEncoder(EncoderConfig(vocab_size=len(vocab), n_langs=len(vocab.languages), d_model=32,
                                           n_layers=2, n_heads=4, d_ff=64, max_positions=64))
    xlm.save_pretrained(tmp_path / "xlm", vocab=vocab)
    cfg = load_config(TrainConfig, _train_config(workdir, tmp_path, init=str(tmp_path / "xlm"), model={
        "pooling": "mean", "dec_emb_dim": 32, "dec_hidden": 32, "transformer": {"dropout": 0.0}}))
    model = pretrain.init_model(cfg, vocab)
    assert model.config.encoder == "transformer" and model.dim == 32 and model.config.transformer.dropout == 0.0
    theirs = xlm.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.encoder.state_dict().items())
    bad = load_config(TrainConfig, _train_config(workdir, tmp_path, init=str(tmp_path / "xlm"),
                                                    model={"transformer": {"d_model": 64}}))
    with pytest.raises(XlingError, match="d_model"):
        pretrain.init_model(bad, vocab)
    long = load_config(TrainConfig, _train_config(workdir, tmp_path, init=str(tmp_path / "xlm")))
    long.data.max_len = 100
    with pytest.raises(XlingError, match="max_positions"):
        pretrain.init_model(long, vocab)


def test_config_errors_are_one_line(workdir, tmp_path, capsys):
    cases = [({"model_type": "encoder"}, "needs model_type: sentence"),
             ({"objectives": [{"type": "mlm", "langs": ["en"]}]}, "cannot train model_type: sentence"),
             ({"model": {"pooling": "cls"}}, "cls needs encoder: transformer"),
             ({"sentence": {"pivots": []}}, "sentence.pivots"),
             ({"objectives": [{"type": "translation_ranking", "langs": ["en"]}]}, "give no direction")]
    for i, (over, match) in enumerate(cases):
        cfg = _train_config(workdir, tmp_path, **over)
        rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / f"r{i}")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err[-1].startswith("xling: error:") and match in err[-1], (over, err)


def test_hard_negatives_cluster_pairs_by_pivot_similarity(workdir, vocab, tmp_path):
    """sentence.hard_negatives: each ranking pair gets the k-means cluster of its pivot
    sentence; equal pivots share one; sentences of a cluster are closer than random ones;
    `xling train` runs with it and batches stay within clusters."""
    from xling.objectives.mixture import MixtureBatches
    from xling.tasks.build import ObjectiveSpec, build_tasks
    from xling.tasks.sentence import cluster_ranking_tasks

    cfg = load_config(TrainConfig, _train_config(workdir, tmp_path))
    tasks = build_tasks([ObjectiveSpec("translation_ranking", ["fr"])], pretrain.build_context(cfg, vocab))
    torch.manual_seed(0)
    model = SentenceEmbedder(tiny_config(vocab))
    k = cluster_ranking_tasks(tasks, model, vocab, max_tokens=512)
    t = tasks[0]
    n = len(t.examples)
    assert t.clusters.shape == (n,) and 1 < k < n and len(np.unique(t.clusters)) <= k
    assert abs(k - n / (512 / t.lengths.mean())) <= 1  # about one batch of pairs per cluster
    pivots = [tuple(y.tolist()) for _, y in t.examples]
    for i in range(n):
        for j in range(i + 1, n):
            if pivots[i] == pivots[j]:
                assert t.clusters[i] == t.clusters[j]
    from xling.embeddings.api import embed_ids

    e = torch.nn.functional.normalize(embed_ids(model, [y for _, y in t.examples], vocab.bos_id, vocab.eos_id), dim=-1)
    dist = 1 - (e @ e.T).numpy()  # (n, n) cosine distances

    def within(labels):  # mean distance between different pairs sharing a label
        same = labels[:, None] == labels[None, :]
        np.fill_diagonal(same, False)
        return dist[same].mean()

    shuffled = [within(np.random.default_rng(s).permutation(t.clusters)) for s in range(20)]
    assert within(t.clusters) < 0.85 * min(shuffled)  # closer than the same cluster sizes drawn at random
    batches = MixtureBatches(tasks, max_tokens=512, seed=0)
    plan = batches._plan(0, 0)
    mixed = sum(len(set(t.clusters[b].tolist())) > 1 for b in plan)
    assert mixed <= len(np.unique(t.clusters))  # a batch spans at most one cluster boundary per cluster
    cfg_path = _train_config(workdir, tmp_path, sentence={"pivots": ["en"], "hard_negatives": True})
    assert main(["train", "--config", str(cfg_path), "--out", str(tmp_path / "hard")]) == 0
    assert json.loads((tmp_path / "hard" / "summary.json").read_text())["steps"] == 4
