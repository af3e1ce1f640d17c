"""The fairseq reference side of issue 15: the side venv and the tiny models made with fairseq.

Nothing here is skipped. The ``fairseq_python`` fixture runs ``make fairseq-venv`` (instant once
built; ``make test`` builds it first) and fails with make's output if the build fails. The
``fairseq_ref`` fixture makes the Bible en-fr corpus with xling (this venv), then runs
``tests/fairseq_ref/make_tiny.py`` with the side venv's python once into
``$XLING_CACHE/fairseq-ref/<key>`` (key: sha256 of make_tiny.py, the corpus and the venv's build
stamp), about 1.5 minutes on 2 cores; later runs reuse it.

fairseq checkpoints are pickles: this process never unpickles them. Whatever needs the
checkpoint's contents is read by a small script run in the side venv, which prints JSON.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURE_DB, ROOT, side_env, side_run, side_reference

MAKE_TINY = ROOT / "tests" / "fairseq_ref" / "make_tiny.py"
VARIANTS = ("postnorm_shared", "prenorm_learned", "noscale")
N_TEST = 50
D_MODEL = 32
FAIRSEQ_PAD, FAIRSEQ_EOS = 1, 2  # fairseq's dictionary: <s>=0 <pad>=1 </s>=2 <unk>=3
TOP_KEYS = ["args", "cfg", "model", "criterion", "optimizer_history", "task_state", "extra_state",
            "last_optimizer_state"]  # fmt: skip

# The first use builds the side venv (about 2.5 minutes) and the reference models (about 1.5).
pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="session")
def fairseq_ref(fairseq_python, tmp_path_factory) -> Path:
    """The directory make_tiny.py wrote (one subdirectory per variant), cached across runs."""
    from xling.cli import main

    corpus = tmp_path_factory.mktemp("fairseq_corpus") / "corpus"
    argv = ["corpus", "bible", "--langs", "en,fr", "--pairs", "en", "--db", str(FIXTURE_DB)]
    assert main(argv + ["--out", str(corpus), "--quiet"]) == 0
    h = hashlib.sha256(MAKE_TINY.read_bytes())
    for path in sorted(corpus.glob("*.en-fr.*")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return side_reference(fairseq_python, MAKE_TINY, "fairseq-ref", h, "--corpus", str(corpus))


INSPECT = r"""
import json, sys, torch
out = {}
for path in sys.argv[1:]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    sd, m = ck["model"], ck["cfg"]["model"]
    eq = lambda a, b: a in sd and b in sd and bool(torch.equal(sd[a], sd[b]))
    out[path] = {
        "top_keys": sorted(ck),
        "model_cfg_type": type(m).__name__,
        "cfg": {k: getattr(m, k, None) for k in (
            "arch", "encoder_layers", "decoder_layers", "encoder_embed_dim", "encoder_attention_heads",
            "encoder_ffn_embed_dim", "encoder_normalize_before", "decoder_normalize_before",
            "encoder_learned_pos", "decoder_learned_pos", "layernorm_embedding", "no_scale_embedding",
            "share_all_embeddings", "share_decoder_input_output_embed", "activation_fn",
            "max_source_positions", "max_target_positions")},
        "shapes": {k: list(v.shape) for k, v in sd.items()},
        "tied_enc_dec": eq("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
        "tied_dec_out": eq("decoder.embed_tokens.weight", "decoder.output_projection.weight"),
        "version": [sd[k].item() for k in ("encoder.version", "decoder.version") if k in sd],
        "num_updates": ck["optimizer_history"][-1]["num_updates"],
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def checkpoints(fairseq_python, fairseq_ref) -> dict[str, dict]:
    """What each checkpoint.pt holds, as read by torch.load in the side venv."""
    paths = [str(fairseq_ref / v / "checkpoint.pt") for v in VARIANTS]
    info = side_run(fairseq_python, INSPECT, *paths)
    return {v: info[p] for v, p in zip(VARIANTS, paths)}


def dict_size(path: Path) -> int:
    """fairseq's dictionary size: 4 specials (not listed) + one entry per line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(re.fullmatch(r".+ \d+", line) for line in lines), path
    return 4 + len(lines)


def test_side_venv_has_fairseq_on_cpu_torch(fairseq_python):
    info = side_run(
        fairseq_python,
        "import json, fairseq, torch; print(json.dumps([fairseq.__version__, torch.__version__, torch.version.cuda]))",
    )
    assert info[0] == "0.12.3.1", info
    assert info[1].startswith("2.13.0") and info[2] is None, info
    gen = subprocess.run(
        [str(fairseq_python.parent / "fairseq-generate"), "--help"], capture_output=True, text=True, env=side_env()
    )
    assert gen.returncode == 0 and "--required-batch-size-multiple" in gen.stdout, gen.stderr[-2000:]


def test_xling_never_imports_fairseq():
    code = (
        "import importlib, pkgutil, sys, xling\n"
        "for m in pkgutil.walk_packages(xling.__path__, 'xling.'): importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('fairseq', 'fairseq_cli'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_variant_has_its_files(fairseq_ref):
    manifest = json.loads((fairseq_ref / "manifest.json").read_text())
    assert manifest["fairseq"] == "0.12.3.1" and manifest["test_sentences"] == N_TEST
    assert sorted(manifest["variants"]) == sorted(VARIANTS)
    for v in VARIANTS:
        d = fairseq_ref / v
        for name in ("checkpoint.pt", "dict.en.txt", "dict.fr.txt", "spm.model", "test.en", "test.fr",
                     "generate-beam1.txt", "generate-beam5.txt", "variant.json"):  # fmt: skip
            assert (d / name).is_file() and (d / name).stat().st_size > 0, d / name
        for split in ("train", "valid", "test"):
            for lang in ("en", "fr"):
                for ext in ("bin", "idx"):
                    assert (d / "data-bin" / f"{split}.en-fr.{lang}.{ext}").is_file()
        for lang in ("en", "fr"):
            assert (d / f"test.{lang}").read_text(encoding="utf-8").count("\n") == N_TEST
            assert (d / f"dict.{lang}.txt").read_bytes() == (d / "data-bin" / f"dict.{lang}.txt").read_bytes()


@pytest.mark.parametrize("beam", [1, 5])
def test_fairseq_generate_translated_all_50(fairseq_ref, beam):
    for v in VARIANTS:
        text = (fairseq_ref / v / f"generate-beam{beam}.txt").read_text(encoding="utf-8")
        for tag in ("S", "T", "H", "D"):
            ids = sorted(int(m) for m in re.findall(rf"^{tag}-(\d+)\t", text, flags=re.M))
            assert ids == list(range(N_TEST)), (v, beam, tag, len(ids))
        assert re.search(rf"^Generate test with beam={beam}: BLEU4 = ", text, flags=re.M), (v, beam)
        hyps = re.findall(r"^H-\d+\t(\S+)\t(.*)$", text, flags=re.M)
        assert len({h for _, h in hyps}) > N_TEST // 2, (v, beam, "outputs barely differ: a collapsed model")
        assert all(np.isfinite(float(score)) for score, _ in hyps)


def test_dictionary_sizes_match_embedding_rows(fairseq_ref, checkpoints):
    for v in VARIANTS:
        src, tgt = dict_size(fairseq_ref / v / "dict.en.txt"), dict_size(fairseq_ref / v / "dict.fr.txt")
        assert src % 8 == 0 and tgt % 8 == 0, (v, src, tgt)  # madeupword padding to a multiple of 8
        shapes = checkpoints[v]["shapes"]
        assert shapes["encoder.embed_tokens.weight"] == [src, D_MODEL], v
        assert shapes["decoder.embed_tokens.weight"] == [tgt, D_MODEL], v
        assert shapes["decoder.output_projection.weight"] == [tgt, D_MODEL], v
        lprobs = np.load(fairseq_ref / v / "reference" / "decoder_lprobs.npy", allow_pickle=False)
        assert lprobs.shape[-1] == tgt, v


def test_checkpoints_are_the_variants_asked_for(checkpoints):
    for v in VARIANTS:
        ck = checkpoints[v]
        assert ck["top_keys"] == sorted(TOP_KEYS), v
        assert ck["model_cfg_type"] == "Namespace" and ck["version"] == [3, 3], v
        assert ck["num_updates"] > 0, v
        cfg = ck["cfg"]
        assert (cfg["arch"], cfg["encoder_layers"], cfg["decoder_layers"]) == ("transformer", 2, 2)
        assert (cfg["encoder_embed_dim"], cfg["encoder_attention_heads"], cfg["encoder_ffn_embed_dim"]) == (32, 4, 64)
    a, b, c = (checkpoints[v] for v in VARIANTS)
    # (a) post-norm, sinusoidal (not stored), everything tied
    assert a["cfg"]["share_all_embeddings"] and a["tied_enc_dec"] and a["tied_dec_out"]
    assert not a["cfg"]["encoder_normalize_before"] and "encoder.layer_norm.weight" not in a["shapes"]
    assert not any("embed_positions" in k for k in a["shapes"])
    # (b) pre-norm, learned positions (max + padding_idx + 1 rows), layernorm_embedding, nothing tied
    assert b["cfg"]["encoder_normalize_before"] and b["cfg"]["decoder_normalize_before"]
    assert b["shapes"]["encoder.layer_norm.weight"] == b["shapes"]["decoder.layer_norm.weight"] == [D_MODEL]
    assert b["shapes"]["encoder.embed_positions.weight"] == [256 + FAIRSEQ_PAD + 1, D_MODEL]
    assert b["shapes"]["decoder.embed_positions.weight"] == [256 + FAIRSEQ_PAD + 1, D_MODEL]
    assert "encoder.layernorm_embedding.weight" in b["shapes"] and "decoder.layernorm_embedding.weight" in b["shapes"]
    assert not b["tied_dec_out"] and not b["cfg"]["share_decoder_input_output_embed"]
    # (c) no embedding scaling, decoder input/output tied, GELU
    assert c["cfg"]["no_scale_embedding"] and c["cfg"]["activation_fn"] == "gelu"
    assert c["tied_dec_out"] and not c["cfg"]["share_all_embeddings"]
    assert not a["cfg"]["no_scale_embedding"] and not b["cfg"]["no_scale_embedding"]


def test_reference_tensors_are_consistent(fairseq_ref):
    for v in VARIANTS:
        r = {p.stem: np.load(p, allow_pickle=False) for p in (fairseq_ref / v / "reference").glob("*.npy")}
        src, lengths, mask = r["src_tokens"], r["src_lengths"], r["encoder_padding_mask"]
        prev, target = r["prev_output_tokens"], r["target"]
        n = len(src)
        assert n >= 2 and r["encoder_out"].shape == (*src.shape, D_MODEL), v
        assert np.array_equal(mask, src == FAIRSEQ_PAD) and np.array_equal((~mask).sum(1), lengths), v
        assert (src[:, -1] == FAIRSEQ_EOS).all(), v  # left-padded: every source ends with </s>
        assert (prev[:, 0] == FAIRSEQ_EOS).all() and prev.shape == target.shape, v  # decoding starts from </s>
        assert np.array_equal(prev[:, 1:][target[:, 1:] != FAIRSEQ_PAD], target[:, :-1][target[:, 1:] != FAIRSEQ_PAD])
        lp = r["decoder_lprobs"]
        assert lp.shape[:2] == target.shape and lp.dtype == np.float32, v
        assert np.allclose(np.exp(lp).sum(-1), 1, atol=1e-4), v
        assert np.isfinite(r["encoder_out"]).all() and np.isfinite(lp).all(), v
        assert n == json.loads((fairseq_ref / v / "variant.json").read_text())["reference_sentences"]


def fairseq_ids(d: Path, lang: str, line: str) -> list[int]:
    """SentencePiece pieces -> fairseq dictionary ids (<unk>=3 when absent), then </s>."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(d / "spm.model"))
    lines = (d / f"dict.{lang}.txt").read_text(encoding="utf-8").splitlines()
    index = {ln.rsplit(" ", 1)[0]: 4 + i for i, ln in enumerate(lines)}
    return [index.get(p, 3) for p in sp.encode(line, out_type=str)] + [FAIRSEQ_EOS]


def test_reference_rows_are_the_first_test_sentences(fairseq_ref):
    """spm.model + dict.*.txt reproduce the ids fairseq-preprocess binarized: the text pipeline a
    converter needs, checked on the reference rows (the first test pairs, in test-set order)."""
    for v in VARIANTS:
        d = fairseq_ref / v
        src = np.load(d / "reference" / "src_tokens.npy", allow_pickle=False)
        target = np.load(d / "reference" / "target.npy", allow_pickle=False)
        en = (d / "test.en").read_text(encoding="utf-8").splitlines()
        fr = (d / "test.fr").read_text(encoding="utf-8").splitlines()
        for i in range(len(src)):
            assert src[i][src[i] != FAIRSEQ_PAD].tolist() == fairseq_ids(d, "en", en[i]), (v, i)
            assert target[i][target[i] != FAIRSEQ_PAD].tolist() == fairseq_ids(d, "fr", fr[i]), (v, i)


# ---------------------------------------------------------------- parity: fairseq -> xling


def _convert(fairseq_ref: Path, variant: str, out: Path) -> Path:
    from xling.cli import main

    d = fairseq_ref / variant
    joined = json.loads((d / "variant.json").read_text())["joined_dictionary"]
    tgt = [] if joined else ["--tgt-dict", str(d / "dict.fr.txt")]
    assert main(["convert", "fairseq", "--input", str(d / "checkpoint.pt"), "--dict", str(d / "dict.en.txt"), *tgt,
                 "--spm", str(d / "spm.model"), "--langs", "en,fr", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def converted(fairseq_ref, tmp_path_factory) -> dict[str, Path]:
    """Every reference variant converted by ``xling convert fairseq`` (separate dictionaries with --tgt-dict)."""
    root = tmp_path_factory.mktemp("converted")
    return {v: _convert(fairseq_ref, v, root / v) for v in VARIANTS}


@pytest.fixture(scope="session")
def converted_shared(converted) -> Path:
    return converted["postnorm_shared"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_encoder_states_and_decoder_log_probs_equal_fairseqs(fairseq_ref, converted, variant):
    """fairseq's own forward (eval mode, saved by make_tiny.py) vs the converted model, within 1e-5:
    post-norm + sinusoidal + shared embeddings; pre-norm + learned positions + layernorm_embedding +
    separate dictionaries, embeddings and an untied output; no embedding scaling + GELU."""
    import torch
    import torch.nn.functional as F

    from xling.convert.fairseq_dict import FairseqDict
    from xling.models.seq2seq import TransformerSeq2Seq
    from xling.tokenization.vocab import Vocab

    d = fairseq_ref / variant
    ref = d / "reference"
    src, prev = np.load(ref / "src_tokens.npy"), np.load(ref / "prev_output_tokens.npy")  # fairseq ids
    enc_f, lp_f = np.load(ref / "encoder_out.npy"), np.load(ref / "decoder_lprobs.npy")  # (B, S, C), (B, T, V)
    vocab = Vocab.load(converted[variant])
    src_x = np.array([vocab._sp.piece_to_id(t) for t in FairseqDict.load(d / "dict.en.txt").symbols])  # id -> xling
    tgt_x = np.array([vocab._sp.piece_to_id(t) for t in FairseqDict.load(d / "dict.fr.txt").symbols])
    model = TransformerSeq2Seq.from_pretrained(converted[variant]).eval()
    for b in range(src.shape[0]):
        real = src[b] != FAIRSEQ_PAD  # fairseq left-pads sources
        dec_real = prev[b] != FAIRSEQ_PAD
        s = torch.from_numpy(src_x[src[b][real]])[None]  # x </s>
        t = torch.from_numpy(tgt_x[prev[b][dec_real]])[None]  # </s> y
        with torch.no_grad():
            enc_x = model.encode(s)[0].numpy()
            lp_x = F.log_softmax(model.lm_logits(model(s, dec_tokens=t))[0].float(), dim=-1).numpy()
        assert np.abs(enc_x - enc_f[b][real]).max() < 1e-5
        assert np.abs(lp_x[:, tgt_x] - lp_f[b][dec_real]).max() < 1e-5  # every fairseq target token's log-prob


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("beam", [1, 5])
def test_xling_translate_equals_fairseq_generate_on_50_sentences(fairseq_ref, converted, variant, beam, tmp_path):
    """The converted model decoded by ``xling translate`` gives fairseq-generate's outputs, every one
    (fairseq's defaults: max length 200 tokens, length penalty 1, min length 1). Compared without
    trailing spaces: fairseq's SentencePiece post-processing strips them, xling keeps SentencePiece's
    exact decoding (a hypothesis cut at 200 tokens after a lone "▁" ends with a space)."""
    from xling.cli import main

    d = fairseq_ref / variant
    out = tmp_path / "hyp.fr"
    assert main(["translate", "--model", str(converted[variant]), "--src-lang", "en", "--tgt-lang", "fr", "--input",
                 str(d / "test.en"), "--beam", str(beam), "--max-len-a", "0", "--max-len-b", "200", "--output",
                 str(out), "--quiet"]) == 0
    fairseq = {}
    for line in (d / f"generate-beam{beam}.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("D-"):
            i, _, text = line[2:].split("\t", 2)
            fairseq[int(i)] = text
    ours = [line.rstrip(" ") for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(ours) == len(fairseq) == N_TEST
    assert ours == [fairseq[i] for i in range(N_TEST)]


# ---------------------------------------------------------------- parity: xling -> fairseq


@pytest.mark.parametrize("variant", VARIANTS)
def test_fairseq_to_xling_to_fairseq_gives_back_the_same_model(fairseq_ref, converted, variant, tmp_path):
    """Every parameter of fairseq's own checkpoint comes back bit for bit, and both dictionaries
    byte for byte (read with xling's safe loader: weights_only, Namespace allowed)."""
    from xling.cli import main
    from xling.convert.pickles import load_checkpoint_pickle

    d = fairseq_ref / variant
    assert main(["convert", "to-fairseq", "--input", str(converted[variant]), "--out", str(tmp_path / "back")]) == 0
    before = load_checkpoint_pickle(d / "checkpoint.pt")["model"]
    after = load_checkpoint_pickle(tmp_path / "back" / "checkpoint.pt")["model"]
    assert set(after) - set(before) <= {f"{s}.embed_positions._float_tensor" for s in ("encoder", "decoder")}
    for k, v in before.items():
        assert torch_equal(v, after[k]), k
    assert (tmp_path / "back/dict.src.txt").read_bytes() == (d / "dict.en.txt").read_bytes()
    assert (tmp_path / "back/dict.tgt.txt").read_bytes() == (d / "dict.fr.txt").read_bytes()


def torch_equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_exported_model_is_decoded_by_fairseq_as_xling_decodes_it(fairseq_python, fairseq_ref, converted,
                                                                      variant, tmp_path):
    """``xling convert to-fairseq`` writes files fairseq-interactive loads (dict.src.txt / dict.tgt.txt,
    the checkpoint's args, the SentencePiece model), and fairseq's beam-5 outputs equal xling's."""
    from xling.cli import main

    converted_shared = converted[variant]
    exported = tmp_path / "fairseq"
    assert main(["convert", "to-fairseq", "--input", str(converted_shared), "--out", str(exported)]) == 0
    src = fairseq_ref / variant / "test.en"
    texts = src.read_text(encoding="utf-8").splitlines()[:20]
    (tmp_path / "src.txt").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    assert main(["translate", "--model", str(converted_shared), "--src-lang", "en", "--tgt-lang", "fr", "--input",
                 str(tmp_path / "src.txt"), "--beam", "5", "--max-len-a", "0", "--max-len-b", "200", "--output",
                 str(tmp_path / "xling.txt"), "--quiet"]) == 0
    cmd = [str(fairseq_python.parent / "fairseq-interactive"), str(exported), "--path", str(exported / "checkpoint.pt"),
           "--source-lang", "src", "--target-lang", "tgt", "--task", "translation", "--beam", "5",
           "--bpe", "sentencepiece", "--sentencepiece-model", str(exported / "spm.model"), "--buffer-size", "64",
           "--batch-size", "16", "--cpu"]
    proc = subprocess.run(cmd, input=(tmp_path / "src.txt").read_text(encoding="utf-8"), capture_output=True,
                          text=True, env=side_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyps = {}
    for line in proc.stdout.splitlines():
        if line.startswith("D-"):
            i, _, text = line[2:].split("\t", 2)
            hyps[int(i)] = text
    assert [hyps[i] for i in range(len(texts))] == (tmp_path / "xling.txt").read_text(encoding="utf-8").splitlines()
