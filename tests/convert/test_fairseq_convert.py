"""``xling convert fairseq``: the converted model computes what fairseq's transformer computes.

The reference here is fairseq's forward pass written out from its code (``TransformerEncoder``,
``TransformerDecoder``, ``MultiheadAttention``, ``SinusoidalPositionalEmbedding``) directly on the
checkpoint's state dict, with fairseq's token ids and layout (``x </s>``, decoding from ``</s>``,
positions from padding_idx + 1). The side-venv tests run fairseq itself on the same files.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import write_fairseq_model
from xling.cli import main
from xling.convert.fairseq import convert
from xling.convert.fairseq_dict import FairseqDict
from xling.convert.pickles import load_checkpoint_pickle
from xling.models.seq2seq import TransformerSeq2Seq
from xling.tokenization.vocab import Vocab

SRC = ["In the beginning God created the heaven", "And the earth was without form"]


def _sinusoidal(n: int, dim: int, padding_idx: int) -> torch.Tensor:
    half = dim // 2
    emb = math.log(10000) / (half - 1)
    emb = torch.exp(torch.arange(half, dtype=torch.float) * -emb)
    emb = torch.arange(n, dtype=torch.float).unsqueeze(1) * emb.unsqueeze(0)
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1).view(n, -1)
    emb[padding_idx, :] = 0
    return emb


def _mha(s, pre, q_in, kv_in, heads, causal=False):
    d = q_in.shape[-1]
    hd = d // heads
    q = (q_in @ s[f"{pre}.q_proj.weight"].T + s[f"{pre}.q_proj.bias"]) * hd ** -0.5
    k = kv_in @ s[f"{pre}.k_proj.weight"].T + s[f"{pre}.k_proj.bias"]
    v = kv_in @ s[f"{pre}.v_proj.weight"].T + s[f"{pre}.v_proj.bias"]
    q, k, v = (t.view(t.shape[0], heads, hd).transpose(0, 1) for t in (q, k, v))  # (H, T, hd)
    w = q @ k.transpose(1, 2)  # (H, Tq, Tk)
    if causal:
        w = w.masked_fill(torch.triu(torch.ones_like(w[0], dtype=torch.bool), 1), float("-inf"))
    o = (F.softmax(w, dim=-1) @ v).transpose(0, 1).reshape(-1, d)
    return o @ s[f"{pre}.out_proj.weight"].T + s[f"{pre}.out_proj.bias"]


def _ln(s, pre, x):
    return F.layer_norm(x, x.shape[-1:], s[f"{pre}.weight"], s[f"{pre}.bias"], 1e-5)


def fairseq_forward(s: dict, a, src_ids: list[int], prev_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """fairseq's encoder output (S, D) and the decoder's log-probs (T, V) for one sentence
    (post-norm, sinusoidal positions, shared embeddings, ReLU, eval mode)."""
    d, heads = a.encoder_embed_dim, a.encoder_attention_heads
    table = _sinusoidal(200, d, 1)
    emb = s["encoder.embed_tokens.weight"]

    def embed(ids):
        return math.sqrt(d) * emb[torch.tensor(ids)] + table[2: 2 + len(ids)]

    def ffn(pre, x):
        return F.relu(x @ s[f"{pre}.fc1.weight"].T + s[f"{pre}.fc1.bias"]) @ s[f"{pre}.fc2.weight"].T + s[f"{pre}.fc2.bias"]

    x = embed(src_ids)
    for i in range(a.encoder_layers):
        p = f"encoder.layers.{i}"
        x = _ln(s, f"{p}.self_attn_layer_norm", x + _mha(s, f"{p}.self_attn", x, x, heads))
        x = _ln(s, f"{p}.final_layer_norm", x + ffn(p, x))
    mem, y = x, embed(prev_ids)
    for i in range(a.decoder_layers):
        p = f"decoder.layers.{i}"
        y = _ln(s, f"{p}.self_attn_layer_norm", y + _mha(s, f"{p}.self_attn", y, y, heads, causal=True))
        y = _ln(s, f"{p}.encoder_attn_layer_norm", y + _mha(s, f"{p}.encoder_attn", y, mem, heads))
        y = _ln(s, f"{p}.final_layer_norm", y + ffn(p, y))
    return mem, F.log_softmax(y @ s["decoder.output_projection.weight"].T, dim=-1)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("fairseq")
    files = write_fairseq_model(d / "fs", layers=2)
    out = convert(files["checkpoint"], files["dict"], files["spm"], d / "xling", ["en", "fr"])
    return files, out


def test_encoder_states_and_decoder_log_probs_match_fairseq(converted):
    files, out = converted
    ck = load_checkpoint_pickle(files["checkpoint"])
    fdict = FairseqDict.load(files["dict"])
    vocab = Vocab.load(out)
    model = TransformerSeq2Seq.from_pretrained(out).eval()
    for text in SRC:
        pieces = [vocab._sp.id_to_piece(i) for i in vocab.encode(text)]
        src_f = [fdict.index(p) for p in pieces] + [fdict.index("</s>")]  # fairseq: x </s>
        tgt_f = [fdict.index(p) for p in pieces[:4]]
        mem_f, lp_f = fairseq_forward(ck["model"], ck["args"], src_f, [fdict.index("</s>")] + tgt_f)
        src_x = torch.tensor([vocab.encode(text) + [vocab.eos_id]])
        dec_x = torch.tensor([[vocab.eos_id] + vocab.encode(text)[:4]])
        with torch.no_grad():
            mem_x = model.encode(src_x)[0]
            lp_x = F.log_softmax(model.lm_logits(model(src_x, dec_tokens=dec_x))[0].float(), dim=-1)
        assert torch.allclose(mem_x, mem_f, atol=1e-5)
        cols = [vocab._sp.piece_to_id(tok) for tok in fdict.symbols]  # xling id of every fairseq row
        assert torch.allclose(lp_x[:, cols], lp_f, atol=1e-5)
        assert lp_x.exp().sum(-1).sub(1).abs().max() < 1e-5  # the other ids carry no mass


def test_translate_decodes_the_converted_model(converted, tmp_path):
    _, out = converted
    src = tmp_path / "src.txt"
    src.write_text("".join(t + "\n" for t in SRC), encoding="utf-8")
    assert main(["translate", "--model", str(out), "--src-lang", "en", "--tgt-lang", "fr", "--input", str(src),
                 "--output", str(tmp_path / "hyp.txt"), "--beam", "3", "--max-len-a", "0", "--max-len-b", "5",
                 "--quiet"]) == 0
    assert len((tmp_path / "hyp.txt").read_text(encoding="utf-8").splitlines()) == 2


@pytest.mark.parametrize("args, match", [
    (dict(arch="lstm"), "architecture 'lstm' is not supported; supported: transformer"),
    (dict(encoder_learned_pos=True), "learned positions on one side only"),
    (dict(adaptive_softmax_cutoff="100,200"), "adaptive softmax"),
    (dict(cross_self_attention=True), "cross-self-attention"),
])
def test_what_xling_cannot_express_is_refused_naming_why(tmp_path, capsys, args, match):
    files = write_fairseq_model(tmp_path / "fs", **args)
    rc = main(["convert", "fairseq", "--input", str(files["checkpoint"]), "--dict", str(files["dict"]),
               "--spm", str(files["spm"]), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and match in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_dictionary_of_another_model_is_refused(tmp_path, capsys):
    files = write_fairseq_model(tmp_path / "fs")
    other = FairseqDict.from_tokens(["a", "b", "c"], padding_factor=8)
    other.save(tmp_path / "other.txt")
    rc = main(["convert", "fairseq", "--input", str(files["checkpoint"]), "--dict", str(tmp_path / "other.txt"),
               "--spm", str(files["spm"]), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "not this model's dictionary" in err and not (tmp_path / "out").exists()


def test_fairseq_to_xling_to_fairseq_is_bit_exact(converted, tmp_path):
    files, out = converted
    assert main(["convert", "to-fairseq", "--input", str(out), "--out", str(tmp_path / "back")]) == 0
    before, after = load_checkpoint_pickle(files["checkpoint"]), load_checkpoint_pickle(tmp_path / "back/checkpoint.pt")
    assert before["model"].keys() == after["model"].keys()
    for k, v in before["model"].items():
        assert torch.equal(v, after["model"][k]), k
    assert (tmp_path / "back/dict.txt").read_bytes() == files["dict"].read_bytes()
    assert (tmp_path / "back/dict.src.txt").read_bytes() == (tmp_path / "back/dict.tgt.txt").read_bytes()
    assert {k: v for k, v in vars(after["args"]).items() if k in vars(before["args"])} == vars(before["args"])


def test_xlings_own_layout_is_refused_naming_what_fairseq_lacks(workspace, tmp_path, capsys):
    rc = main(["convert", "to-fairseq", "--input", str(workspace.s2s), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and not (tmp_path / "out").exists()
    for why in ("sources start with <s>", "XLM-style transform"):
        assert why in err[0], err
    for foldable in ("decoding starts from <s>", "language embeddings"):  # learned positions: folded, not refused
        assert foldable not in err[0], err
