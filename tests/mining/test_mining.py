"""Bitext mining: faiss vs brute force, chunked vs in-memory, hand-worked margins,
retrieval modes and threshold, bad inputs, the ``xling mine`` command."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from helpers import FakeEncoder, stub_encoder
from xling.cli import main
from xling.errors import XlingError
from xling.mining import Embeddings, Neighbours, knn, mine, mine_files, mine_texts, select_pairs
from xling.mining.mine import greedy_match
from xling.mining.margin import neighbour_mean

# Hand-worked example (unit vectors from 3-4-5 triangles, so every cosine is exact):
#   x0 = (1, 0), x1 = (0, 1);  y0 = (.8, .6), y1 = (.6, .8), y2 = (-.6, .8)
#   cos:     y0   y1   y2
#     x0     .8   .6  -.6
#     x1     .6   .8   .8
# k = 2: fwd means x0 (.8+.6)/2 = .7, x1 (.8+.8)/2 = .8
#        bwd means y0 (.8+.6)/2 = .7, y1 (.8+.6)/2 = .7, y2 (.8-.6)/2 = .1
# ratio:    x0-y0 .8/((.7+.7)/2) = 1.142857   x0-y1 .6/.7 = .857143
#           x1-y1 .8/((.8+.7)/2) = 1.066667   x1-y2 .8/((.8+.1)/2) = 1.777778   x1-y0 .6/.75 = .8
# distance: x0-y0 .8-.7 = .1   x1-y2 .8-.45 = .35   x1-y1 .8-.75 = .05
X = np.array([[1, 0], [0, 1]], dtype=np.float32)
Y = np.array([[0.8, 0.6], [0.6, 0.8], [-0.6, 0.8]], dtype=np.float32)


def triples(p):
    return [(int(i), int(j), round(float(s), 5)) for i, j, s in zip(p.src, p.tgt, p.score)]


def noisy_pairs(n=300, d=24, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)).astype(np.float32)
    return a, (a + noise * rng.normal(size=(n, d))).astype(np.float32)


# ----------------------------------------------------------------------------- search


def test_faiss_flat_equals_brute_force():
    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(120, 16)), rng.normal(size=(90, 16))
    sims, ids = knn(Embeddings(q), Embeddings(c), 5, chunk_size=17)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    cn = c / np.linalg.norm(c, axis=1, keepdims=True)
    full = qn @ cn.T  # (120, 90)
    expect = np.argsort(-full, axis=1)[:, :5]
    assert (ids == expect).all()
    np.testing.assert_allclose(sims, np.take_along_axis(full, expect, axis=1), atol=1e-5)


def test_ivf_visiting_every_list_is_exact_and_hnsw_close():
    rng = np.random.default_rng(2)
    q, c = rng.normal(size=(100, 16)), rng.normal(size=(800, 16))
    exact = knn(Embeddings(q), Embeddings(c), 4)[1]
    ivf = knn(Embeddings(q), Embeddings(c), 4, "IVF8,Flat", nprobe=8)[1]
    assert (ivf == exact).all()
    hnsw = knn(Embeddings(q), Embeddings(c), 4, "HNSW16", ef_search=128)[1]
    assert (hnsw[:, 0] == exact[:, 0]).mean() > 0.95


def test_chunked_files_equal_in_memory(tmp_path):
    a, b = noisy_pairs(257, noise=0.8)
    np.save(tmp_path / "a.npy", a.astype(np.float16).astype(np.float32))
    np.save(tmp_path / "b.npy", b.astype(np.float16))  # other dtypes are read as float32
    a16, b16 = a.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)
    rows = np.sort(np.random.default_rng(0).choice(257, 200, replace=False))
    for mode in ("forward", "backward", "intersection", "max"):
        ref = mine(a16[rows], b16, mode=mode)
        got = mine(tmp_path / "a.npy", tmp_path / "b.npy", mode=mode, chunk_size=7, src_rows=rows)
        assert (rows[ref.src] == got.src).all() and (ref.tgt == got.tgt).all()
        np.testing.assert_allclose(ref.score, got.score, atol=1e-5)


# ----------------------------------------------------------------------------- margin and modes


def test_margin_values_by_hand():
    assert triples(mine(X, Y, k=2, mode="forward")) == [(1, 2, 1.77778), (0, 0, 1.14286)]
    assert triples(mine(X, Y, k=2, mode="backward")) == [(1, 2, 1.77778), (0, 0, 1.14286), (1, 1, 1.06667)]
    assert triples(mine(X, Y, k=2, mode="forward", margin="distance")) == [(1, 2, 0.35), (0, 0, 0.1)]
    assert triples(mine(X, Y, k=2, mode="backward", margin="absolute")) == [(0, 0, 0.8), (1, 1, 0.8), (1, 2, 0.8)]


def test_threshold_applies_in_every_mode():
    for mode in ("forward", "backward", "intersection", "max"):
        assert triples(mine(X, Y, k=2, mode=mode, threshold=1.5)) == [(1, 2, 1.77778)]
    assert triples(mine(X, Y, k=2, mode="backward", threshold=1.1)) == [(1, 2, 1.77778), (0, 0, 1.14286)]
    assert triples(mine(X, Y, k=2, mode="max", threshold=1.142857)) == [(1, 2, 1.77778), (0, 0, 1.14286)]


def nb_from(fwd, bwd):
    """Neighbours from explicit candidate lists [(id, cos), ...] per row (k = 2)."""
    def arrays(rows):
        ids = np.array([[i for i, _ in r] for r in rows], dtype=np.int64)
        sims = np.array([[c for _, c in r] for r in rows], dtype=np.float32)
        return sims, ids
    fs, fi = arrays(fwd)
    bs, bi = arrays(bwd)
    return Neighbours(fs, fi, bs, bi, n_src=len(fwd), n_tgt=len(bwd))


def test_modes_as_defined():
    # absolute margin: scores are the cosines. Sources 0..2, targets 0..2.
    nb = nb_from(fwd=[[(0, 0.9), (1, 0.5)], [(0, 0.8), (2, 0.7)], [(2, 0.6), (1, 0.4)]],
                 bwd=[[(0, 0.9), (1, 0.8)], [(0, 0.5), (2, 0.4)], [(1, 0.7), (2, 0.6)]])
    # forward: each source's best target (target 0 twice); backward: each target's best source
    assert triples(select_pairs(nb, "absolute", "forward")) == [(0, 0, 0.9), (1, 0, 0.8), (2, 2, 0.6)]
    assert triples(select_pairs(nb, "absolute", "backward")) == [(0, 0, 0.9), (1, 2, 0.7), (0, 1, 0.5)]
    # intersection: best both ways -> only 0-0 (1->0 but 0->0; 2->2 but 2->1)
    assert triples(select_pairs(nb, "absolute", "intersection")) == [(0, 0, 0.9)]
    # max: 0-0 .9 (fwd and bwd: once), 1-0 .8 blocked (target 0 used), 1-2 .7, 2-2 .6 blocked, 0-1 .5 blocked
    assert triples(select_pairs(nb, "absolute", "max")) == [(0, 0, 0.9), (1, 2, 0.7)]


def test_neighbour_mean_skips_missing():
    sims = np.array([[0.8, 0.4], [0.6, -3e38]], dtype=np.float32)
    ids = np.array([[1, 2], [0, -1]])
    np.testing.assert_allclose(neighbour_mean(sims, ids), [0.6, 0.6])


def test_vectorised_greedy_equals_loop():
    rng = np.random.default_rng(3)
    for trial in range(20):
        c = 300
        src, tgt = rng.integers(0, 40, c), rng.integers(0, 50, c)
        score = rng.integers(0, 30, c).astype(np.float32)  # many ties
        order = np.lexsort((tgt, src, -score))
        seen_s, seen_t, loop = set(), set(), []
        for i in order:
            if src[i] not in seen_s and tgt[i] not in seen_t:
                seen_s.add(src[i]), seen_t.add(tgt[i]), loop.append(i)
        assert sorted(loop) == greedy_match(src, tgt, score).tolist()


def test_noisy_copies_are_found_with_every_index():
    a, b = noisy_pairs(400)
    for index in ("Flat", "IVF4,Flat", "HNSW16"):
        p = mine(a, b, index=index, nprobe=4)
        assert (p.src == p.tgt).mean() > 0.98 and np.all(np.diff(p.score) <= 0)


# ----------------------------------------------------------------------------- texts, duplicates


def test_mine_texts_drops_duplicates_and_empty_lines():
    a, b = noisy_pairs(20, noise=0.1)
    src = [f"s{i}" for i in range(20)]
    tgt = [f"t{i}" for i in range(20)]
    tgt[5], b[5] = "t4", b[4]  # repeated line (same text, same vector)
    tgt[7] = " "
    out = mine_texts(src, tgt, a, b)
    assert [t for _, _, t in out].count("t4") == 1 and " " not in [t for _, _, t in out]
    assert len({(s, t) for _, s, t in out}) == len(out)
    assert all(s[1:] == t[1:] for _, s, t in out) and len(out) == 18


def write(path, lines, raw=None):
    path.write_bytes(raw if raw is not None else "".join(x + "\n" for x in lines).encode("utf-8"))
    return path


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs(tmp_path, caplog):
    a, b = noisy_pairs(30)
    with pytest.raises(XlingError, match=r"target embeddings: 30 sentences, fewer than the k=40 neighbours"):
        mine(a, b, k=40)
    with pytest.raises(XlingError, match="dimension 24.*dimension 12"):
        mine(a, b[:, :12])
    with pytest.raises(XlingError, match="no embeddings"):
        mine(a[:0], b)
    bad = a.copy()
    bad[3, 1] = np.nan
    with pytest.raises(XlingError, match="row 3: non-finite"):
        mine(bad, b)
    with pytest.raises(XlingError, match="could not parse"):
        mine(a, b, index="IVFbogus")
    with pytest.raises(XlingError, match=r"30 sentences are too few to train faiss index 'IVF64,Flat' \(it needs at least 64\)"):
        mine(a, b, index="IVF64,Flat")
    with pytest.raises(XlingError, match="unknown mode"):
        mine(a, b, mode="both")
    with pytest.raises(XlingError, match="2-D"):
        mine(a[0], b)
    with caplog.at_level(logging.WARNING):
        big = np.concatenate([b, np.random.default_rng(5).normal(size=(600, 24)).astype(np.float32)])
        p = mine(a, big)  # very different sizes work
    assert "differ 21x" in caplog.text and (p.src == p.tgt).mean() > 0.9


def test_bad_files(tmp_path):
    a, b = noisy_pairs(5)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    ok = write(tmp_path / "ok.txt", [f"t{i}" for i in range(5)])
    kw = dict(out=tmp_path / "o.tsv", k=2)
    with pytest.raises(XlingError, match=r"bad.txt:2: invalid UTF-8"):
        mine_files(tmp_path / "a.npy", tmp_path / "b.npy", src_text=write(tmp_path / "bad.txt", [], b"a\n\xff\nc\nd\ne\n"), tgt_text=ok, **kw)
    with pytest.raises(XlingError, match="4 lines but .*5 embeddings"):
        mine_files(tmp_path / "a.npy", tmp_path / "b.npy", src_text=write(tmp_path / "s.txt", list("abcd")), tgt_text=ok, **kw)
    with pytest.raises(XlingError, match="no non-empty lines"):
        mine_files(tmp_path / "a.npy", tmp_path / "b.npy", src_text=write(tmp_path / "e.txt", [""] * 5), tgt_text=ok, **kw)
    with pytest.raises(XlingError, match=r"a\.npy: 2 sentences after removing duplicates and empty lines, fewer than the k=3"):
        mine_files(tmp_path / "a.npy", tmp_path / "b.npy", src_text=write(tmp_path / "d.txt", list("aabba")), tgt_text=ok,
                   out=tmp_path / "o.tsv", k=3)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(XlingError, match="not a readable .npy"):
        mine_files(tmp_path / "junk.npy", tmp_path / "b.npy", **kw)
    assert not (tmp_path / "o.tsv").exists()


# ----------------------------------------------------------------------------- CLI


def test_cli_embeddings_end_to_end(tmp_path, capsys):
    a, b = noisy_pairs(60, noise=0.2)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b[::-1].copy())  # target lines in reverse order
    write(tmp_path / "a.txt", [f"src {i}" for i in range(60)])
    write(tmp_path / "b.txt", [f"tgt {59 - i}" for i in range(60)])
    out = tmp_path / "pairs.tsv"
    rc = main(["mine", "--src-emb", str(tmp_path / "a.npy"), "--tgt-emb", str(tmp_path / "b.npy"), "--src", str(tmp_path / "a.txt"),
               "--tgt", str(tmp_path / "b.txt"), "--out", str(out), "--chunk-size", "16", "--threshold", "1.0", "--quiet"])
    assert rc == 0
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    scores = [float(r[0]) for r in rows]
    assert len(rows) == 60 and scores == sorted(scores, reverse=True) and min(scores) >= 1.0
    assert all(s.split()[1] == t.split()[1] for _, s, t in rows)
    # no texts: row numbers
    rc = main(["mine", "--src-emb", str(tmp_path / "a.npy"), "--tgt-emb", str(tmp_path / "b.npy"), "--out", str(out),
               "--mode", "intersection", "--index", "IVF2,Flat", "--nprobe", "2", "--quiet"])
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert rc == 0 and all(int(s) == 59 - int(t) for _, s, t in rows)
    rc = main(["mine", "--src-emb", str(tmp_path / "a.npy"), "--tgt-emb", str(tmp_path / "b.npy"), "--out", str(out), "--k", "99"])
    assert rc == 2 and "b.npy: 60 sentences, fewer than the k=99 neighbours" in capsys.readouterr().err


def test_cli_model_path(tmp_path, monkeypatch, capsys):
    stub_encoder(monkeypatch, FakeEncoder)
    write(tmp_path / "de.txt", [f"satz {i}" for i in range(12)] + [""])
    write(tmp_path / "en.txt", [f"sentence {i}" for i in (3, 1, 4, 1, 5, 9, 2, 6, 0, 7, 8, 10, 11)])
    out = tmp_path / "pairs.tsv"
    args = ["mine", "--model", "M", "--src", str(tmp_path / "de.txt"), "--src-lang", "de", "--tgt", str(tmp_path / "en.txt"),
            "--tgt-lang", "en", "--out", str(out), "--k", "2"]
    assert main(args) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert len(rows) == 12 and all(s.split()[1] == t.split()[1] for _, s, t in rows)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temporary embeddings removed
    assert main(args[:-4] + ["--tgt-lang", "xx", "--out", str(out)]) == 2
    assert "unknown language 'xx'" in capsys.readouterr().err
    assert main(["mine", "--model", "M", "--src", "a", "--out", str(out)]) == 2
    assert "missing --src-lang, --tgt, --tgt-lang" in capsys.readouterr().err


class NotToBeCalled(FakeEncoder):
    def encode(self, *args, **kw):
        pytest.fail("sentences were encoded before the inputs and settings were checked")


@pytest.mark.parametrize("src,tgt,extra,match", [
    ("one", "many", [], "one.txt: 1 sentence after removing duplicates and empty lines, fewer than the k=4"),
    ("many", "dups", ["--k", "3"], "dups.txt: 2 sentences after removing duplicates and empty lines, fewer than the k=3"),
    ("many", "small", ["--index", "IVF64,Flat"], "small.txt: 20 sentences are too few to train faiss index 'IVF64,Flat'"),
    ("small", "many", ["--index", "IVF4,PQ4"], "small.txt: 20 sentences are too few to train faiss index 'IVF4,PQ4'"),
    ("many", "small", ["--index", "IVFbogus"], "faiss index 'IVFbogus'"),
    ("many", "blank", [], "blank.txt: no non-empty lines to mine"),
    ("empty", "many", [], "empty.txt: empty file"),
    ("many", "small", ["--tgt-lang", "xx"], "unknown language 'xx'"),
])
def test_cli_model_path_checks_before_encoding_and_names_the_users_files(tmp_path, monkeypatch, capsys, src, tgt,
                                                                           extra, match):
    """`xling mine --model M --src one_line.txt --tgt 5000_lines.txt` fails at once (not after
    encoding every line) and names the user's file, never a temporary one."""
    stub_encoder(monkeypatch, NotToBeCalled)
    files = {"one": ["satz 1"], "many": [f"sentence {i}" for i in range(5000)], "dups": ["satz 1", "satz 2", "satz 1", ""],
             "small": [f"satz {i}" for i in range(20)], "blank": ["", " "], "empty": []}
    path = {name: write(tmp_path / f"{name}.txt", lines) for name, lines in files.items()}
    out = tmp_path / "pairs.tsv"
    args = ["mine", "--model", "M", "--src", str(path[src]), "--src-lang", "de", "--tgt", str(path[tgt]),
            "--tgt-lang", "en", "--out", str(out)]
    capsys.readouterr()
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xling: error:") and match in err[0], err
    assert ".xling-mine" not in err[0] and ".npy" not in err[0]
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


class NaNEncoder(FakeEncoder):
    def encode(self, texts, lang, batch_size=64, normalize=True, truncation=None):
        out = super().encode(texts, lang, batch_size, normalize)
        out[[t == "satz 3" for t in texts]] = np.nan
        return out


def test_cli_model_path_errors_after_encoding_name_the_text_file(tmp_path, monkeypatch, capsys):
    stub_encoder(monkeypatch, NaNEncoder)
    src = write(tmp_path / "de.txt", [f"satz {i}" for i in range(6)])
    tgt = write(tmp_path / "en.txt", [f"sentence {i}" for i in range(6)])
    assert main(["mine", "--model", "M", "--src", str(src), "--src-lang", "de", "--tgt", str(tgt), "--tgt-lang", "en",
                 "--out", str(tmp_path / "p.tsv"), "--k", "2"]) == 2
    err = capsys.readouterr().err
    assert f"{src}: row 3: non-finite values" in err and ".npy" not in err, err
