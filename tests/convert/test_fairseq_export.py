"""xling's own encoder-decoders exported to fairseq (``xling convert to-fairseq``), proven with fairseq.

A model is trained here by ``xling train`` in the layout fairseq can express (sources ``x </s>``,
a plain output projection) but with what xling adds: language embeddings, learned positions at
offset 0, decoding from ``<s>``. The export folds those into fairseq's tables; fairseq itself (the
side venv) then loads the checkpoint, and its encoder states and decoder log-probabilities equal
xling's within 1e-5, and ``fairseq-interactive`` decodes as ``xling translate`` (greedy and beam 5).
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import TINY_CONFIG, side_env, side_run
from xling.cli import main

pytestmark = pytest.mark.timeout(1800)  # the first use may build the side venv (about 2.5 minutes)

N_SENT = 20
EXPORTABLE = ["model_type=seq2seq", "objectives=[{type: translation, langs: [en-fr]}]", "model.n_layers=1",
              "model.n_dec_layers=1", "model.source_bos=false", "model.lm_transform=false", "model.lm_bias=false",
              "model.max_positions=256"]  # fmt: skip


def _train(ws, out, *extra) -> int:
    sets = [f"data.corpus={ws.corpus}", f"data.vocab={ws.vocab}", "data.max_len=250", "data.max_tgt_len=250",
            "data.max_tokens=2048", "trainer.valid_every=0", "trainer.save_every=0", "trainer.max_steps=300",
            "trainer.lr=3e-3", "trainer.warmup_steps=10", *extra]  # fmt: skip
    args = ["train", "--config", str(TINY_CONFIG), "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    return main(args)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def native(workspace, workdir):
    """Trained on the workspace's Bible en-fr corpus in fairseq's source layout, with language
    embeddings, offset-0 positions, <s> start."""
    assert _train(workspace, workdir / "native", *EXPORTABLE) == 0
    return workdir / "native" / "model"


@pytest.fixture(scope="module")
def exported(native, workdir):
    out = workdir / "fairseq"
    assert main(["convert", "to-fairseq", "--input", str(native), "--out", str(out), "--src-lang", "en",
                 "--tgt-lang", "fr"]) == 0
    return out


def test_the_model_was_trained_in_the_layout_asked_for(native):
    from xling.models.seq2seq import TransformerSeq2Seq

    c = TransformerSeq2Seq.from_pretrained(native).config
    assert (c.source_bos, c.decoder_start, c.use_lang_embeddings, c.position_offset) == (False, "bos", True, 0)
    assert (c.lm_transform, c.lm_bias, c.positions) == (False, False, "learned")


def test_the_dictionary_lists_every_piece_in_xlings_order(native, exported):
    from xling.convert.fairseq_dict import FairseqDict
    from xling.tokenization.vocab import Vocab

    vocab = Vocab.load(native)
    d = FairseqDict.load(exported / "dict.src.txt")
    assert len(d) == len(vocab)  # <mask> kept, no madeupword padding
    assert d.symbols[4:] == [vocab.id_to_piece(i) for i in range(4, len(vocab))]
    assert (exported / "dict.tgt.txt").read_bytes() == (exported / "dict.src.txt").read_bytes()


FORWARD = r"""
import json, sys, numpy as np, torch
from fairseq import checkpoint_utils
torch.set_num_threads(1)
d = sys.argv[1]
models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task(
    [d + "/checkpoint.pt"], arg_overrides={"data": d, "source_lang": "src", "target_lang": "tgt"})
model = models[0].eval()
rows = json.load(open(d + "/rows.json"))
enc_out, lprobs = [], []
for src, prev in zip(rows["src"], rows["prev"]):
    s, p = torch.tensor([src]), torch.tensor([prev])
    with torch.no_grad():
        enc = model.encoder(s, src_lengths=torch.tensor([len(src)]))
        out = model.decoder(p, encoder_out=enc)
        lp = model.get_normalized_probs(out, log_probs=True)
    enc_out.append(enc["encoder_out"][0][:, 0].numpy())
    lprobs.append(lp[0].numpy())
np.savez(d + "/fairseq_forward.npz", *enc_out, *lprobs)
shared = model.encoder.embed_tokens.weight.data_ptr() == model.decoder.embed_tokens.weight.data_ptr()
print(json.dumps({"n": len(enc_out), "shared": bool(shared)}))
"""


def _pairs(ws, n):
    en = (ws.corpus / "test.en-fr.en").read_text(encoding="utf-8").splitlines()[:n]
    fr = (ws.corpus / "test.en-fr.fr").read_text(encoding="utf-8").splitlines()[:n]
    return en, fr


def test_fairseq_computes_what_xling_computes(fairseq_python, native, exported, workspace):
    """Encoder states and decoder log-probabilities of fairseq's model (the exported checkpoint,
    loaded by fairseq's own checkpoint_utils) equal xling's within 1e-5 on 20 test pairs."""
    import json

    import torch
    import torch.nn.functional as F

    from xling.convert.fairseq_dict import FairseqDict
    from xling.models.seq2seq import TransformerSeq2Seq
    from xling.tokenization.vocab import BOS, EOS, Vocab

    vocab = Vocab.load(native)
    model = TransformerSeq2Seq.from_pretrained(native).eval()
    d = FairseqDict.load(exported / "dict.src.txt")
    to_fs = {vocab._sp.piece_to_id(tok): j for j, tok in enumerate(d.symbols)}  # xling id -> fairseq index
    en, fr = _pairs(workspace, N_SENT)
    xs = [vocab.encode(t)[:200] + [EOS] for t in en]
    ys = [vocab.encode(t)[:200] for t in fr]
    rows = {"src": [[to_fs[i] for i in x] for x in xs], "prev": [[to_fs[EOS]] + [to_fs[i] for i in y] for y in ys]}
    (exported / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    info = side_run(fairseq_python, FORWARD, str(exported))
    assert info["n"] == N_SENT and info["shared"]  # shared tables: the folds went into positions only
    ref = np.load(exported / "fairseq_forward.npz")
    perm = np.array([vocab._sp.piece_to_id(tok) for tok in d.symbols])  # fairseq index -> xling id
    worst_enc = worst_lp = 0.0
    for b, (x, y) in enumerate(zip(xs, ys)):
        s, t = torch.tensor([x]), torch.tensor([[BOS] + y])
        en_id, fr_id = vocab.lang_id("en"), vocab.lang_id("fr")
        with torch.no_grad():
            enc = model.encode(s, langs=torch.full_like(s, en_id))[0].numpy()
            h = model(s, langs=torch.full_like(s, en_id), dec_tokens=t, dec_langs=torch.full_like(t, fr_id))
            lp = F.log_softmax(model.lm_logits(h)[0].float(), dim=-1).numpy()
        worst_enc = max(worst_enc, float(np.abs(enc - ref[f"arr_{b}"]).max()))
        worst_lp = max(worst_lp, float(np.abs(lp[:, perm] - ref[f"arr_{N_SENT + b}"]).max()))
    assert worst_enc < 1e-5 and worst_lp < 1e-5, (worst_enc, worst_lp)


@pytest.mark.parametrize("beam", [1, 5])
def test_fairseq_interactive_decodes_the_export_as_xling_translates(fairseq_python, native, exported, workspace,
                                                                    beam, tmp_path):
    en, _ = _pairs(workspace, N_SENT)
    src = tmp_path / "src.en"
    src.write_text("".join(t + "\n" for t in en), encoding="utf-8")
    assert main(["translate", "--model", str(native), "--src-lang", "en", "--tgt-lang", "fr", "--input", str(src),
                 "--beam", str(beam), "--max-len-a", "0", "--max-len-b", "200", "--output",
                 str(tmp_path / "xling.fr"), "--quiet"]) == 0
    cmd = [str(fairseq_python.parent / "fairseq-interactive"), str(exported), "--path", str(exported / "checkpoint.pt"),
           "--source-lang", "src", "--target-lang", "tgt", "--task", "translation", "--beam", str(beam),
           "--bpe", "sentencepiece", "--sentencepiece-model", str(exported / "spm.model"), "--buffer-size", "64",
           "--batch-size", "16", "--cpu"]  # fmt: skip
    proc = subprocess.run(cmd, input=src.read_text(encoding="utf-8"), capture_output=True, text=True, env=side_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyps = {int(line[2:].split("\t", 1)[0]): line.split("\t", 2)[2] for line in proc.stdout.splitlines()
            if line.startswith("D-")}
    ours = [line.rstrip(" ") for line in (tmp_path / "xling.fr").read_text(encoding="utf-8").splitlines()]
    assert len(hyps) == N_SENT and any(ours)
    assert [hyps[i] for i in range(N_SENT)] == ours


def test_what_fairseq_cannot_express_is_refused_by_name(native, tmp_path, capsys):
    """An xling-layout model (<s> x </s>, XLM head with bias) names every reason; a model with
    language embeddings needs its direction; nothing is written."""
    import dataclasses

    import torch

    from xling.models.config import Seq2SeqConfig
    from xling.models.seq2seq import TransformerSeq2Seq
    from xling.tokenization.vocab import Vocab

    vocab = Vocab.load(native)
    xling_layout = tmp_path / "xling_layout"
    TransformerSeq2Seq(Seq2SeqConfig(len(vocab), 2, d_model=16, n_layers=1, n_dec_layers=1, n_heads=2, d_ff=32,
                                     positions="sinusoidal", cross_out_per_lang=True)).save_pretrained(xling_layout,
                                                                                                      vocab=vocab)
    biased = tmp_path / "biased"
    trained = TransformerSeq2Seq.from_pretrained(native)
    m = TransformerSeq2Seq(dataclasses.replace(trained.config, lm_bias=True))
    m.load_state_dict(trained.state_dict(), strict=False)
    with torch.no_grad():
        m.encoder.lm_head.bias[7] = 0.5
    m.save_pretrained(biased, vocab=vocab)
    cases = [
        (["--input", str(xling_layout)], ["source_bos", "lm_transform", "sinusoidal", "per language"]),
        (["--input", str(biased), "--src-lang", "en", "--tgt-lang", "fr"], ["lm_bias"]),
        (["--input", str(native)], ["--src-lang and --tgt-lang", "en, fr"]),
        (["--input", str(native), "--src-lang", "en", "--tgt-lang", "de"], ["de"]),
    ]
    for argv, words in cases:
        out = tmp_path / "out"
        assert main(["convert", "to-fairseq", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and all(w in err[0] for w in words), err
        assert not out.exists()
