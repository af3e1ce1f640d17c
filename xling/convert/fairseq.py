"""fairseq ``transformer`` translation checkpoints -> an xling encoder-decoder directory.

    xling convert fairseq --input checkpoint_best.pt --dict dict.en.txt --spm spm.model --out DIR
                          [--langs en,fr]

Read without fairseq (a ``weights_only`` pickle, :mod:`xling.convert.pickles`). The model
becomes a :class:`~xling.models.seq2seq.TransformerSeq2Seq` configured like the checkpoint
(post- or pre-norm, sinusoidal positions in fairseq's layout with its padding offset, sqrt(d)
embedding scaling, ReLU / GELU, a plain tied output projection without bias, sources ``x </s>``,
decoding from ``</s>``); its vocabulary is the SentencePiece model rewritten with xling's
special ids (:mod:`xling.convert.spm_vocab`). Shared or separate dictionaries and embeddings
(``--tgt-dict``), learned or sinusoidal positions and ``layernorm_embedding`` per side, tied or untied
output projections are kept; refused, naming the reason: adaptive softmax, cross-self-attention, layer-wise
attention, different encoder/decoder widths, checkpoints older than fairseq's layout version 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xling.convert.registry import Converter, register_converter
from xling.errors import XlingError

SUPPORTED_ARCHS = ("transformer", "transformer_iwslt_de_en", "transformer_wmt_en_de", "transformer_vaswani_wmt_en_de_big",
                   "transformer_vaswani_wmt_en_fr_big", "transformer_wmt_en_de_big", "transformer_wmt_en_de_big_t2t")
BASE = dict(encoder_embed_dim=512, encoder_ffn_embed_dim=2048, encoder_layers=6, encoder_attention_heads=8,
            encoder_normalize_before=False, encoder_learned_pos=False, decoder_learned_pos=False,
            decoder_normalize_before=False, activation_fn="relu", dropout=0.1, attention_dropout=0.0,
            no_scale_embedding=False, layernorm_embedding=False, share_all_embeddings=False,
            share_decoder_input_output_embed=False, max_source_positions=1024, max_target_positions=1024,
            adaptive_softmax_cutoff=None, cross_self_attention=False, layer_wise_attention=False,
            no_token_positional_embeddings=False)
ARCH_DEFAULTS = {  # what fairseq's architecture functions set before base_architecture
    "transformer_iwslt_de_en": dict(encoder_embed_dim=512, encoder_ffn_embed_dim=1024, encoder_attention_heads=4,
                                    encoder_layers=6, decoder_ffn_embed_dim=1024, decoder_attention_heads=4),
    "transformer_vaswani_wmt_en_de_big": dict(encoder_embed_dim=1024, encoder_ffn_embed_dim=4096,
                                              encoder_attention_heads=16, dropout=0.3, decoder_ffn_embed_dim=4096,
                                              decoder_attention_heads=16),
}
ARCH_DEFAULTS["transformer_vaswani_wmt_en_fr_big"] = {**ARCH_DEFAULTS["transformer_vaswani_wmt_en_de_big"], "dropout": 0.1}
ARCH_DEFAULTS["transformer_wmt_en_de_big"] = {**ARCH_DEFAULTS["transformer_vaswani_wmt_en_de_big"],
                                              "attention_dropout": 0.1}
ARCH_DEFAULTS["transformer_wmt_en_de_big_t2t"] = {**ARCH_DEFAULTS["transformer_wmt_en_de_big"],
                                                  "encoder_normalize_before": True, "decoder_normalize_before": True,
                                                  "activation_dropout": 0.1}


def model_args(ckpt: dict, where: str) -> dict[str, Any]:
    """The model's hyper-parameters: ``args`` (a Namespace, older files) or ``cfg["model"]``,
    completed with the architecture's defaults (what fairseq's registry would fill in)."""
    args = ckpt.get("args")  # older files: a Namespace; fairseq 0.12: None, and cfg["model"] (a Namespace or dict)
    if args is None and isinstance(ckpt.get("cfg"), dict):
        args = ckpt["cfg"].get("model")
    if args is None:
        raise XlingError(f"{where}: no 'args' or 'cfg' with the model's settings (not a fairseq checkpoint?)")
    a = dict(args) if isinstance(args, dict) else dict(vars(args))
    arch = a.get("arch") or a.get("_name")
    if arch not in SUPPORTED_ARCHS:
        raise XlingError(f"{where}: architecture {arch!r} is not supported; supported: {', '.join(SUPPORTED_ARCHS)}")
    out = {**BASE, **ARCH_DEFAULTS.get(arch, {})}
    out.update({k: v for k, v in a.items() if v is not None or k == "adaptive_softmax_cutoff"})
    for side in ("ffn_embed_dim", "attention_heads", "embed_dim", "layers"):
        out.setdefault(f"decoder_{side}", out[f"encoder_{side}"])
    out["arch"] = arch
    return out


def _refuse(where: str, why: str) -> XlingError:
    return XlingError(f"{where}: cannot be expressed as an xling encoder-decoder: {why}")


def check_expressible(a: dict[str, Any], state: dict, where: str) -> None:
    """Refuse, with the reason, what xling's seq2seq cannot express."""
    if a.get("adaptive_softmax_cutoff"):
        raise _refuse(where, "adaptive softmax")
    for flag in ("cross_self_attention", "layer_wise_attention", "no_token_positional_embeddings"):
        if a.get(flag):
            raise _refuse(where, flag.replace("_", "-"))
    for side in ("embed_dim", "ffn_embed_dim", "attention_heads"):
        if a[f"encoder_{side}"] != a[f"decoder_{side}"]:
            raise _refuse(where, f"encoder and decoder differ in {side} ({a[f'encoder_{side}']} vs {a[f'decoder_{side}']})")
    if a["encoder_normalize_before"] != a["decoder_normalize_before"]:
        raise _refuse(where, "pre-norm on one side only")
    if a["encoder_learned_pos"] != a["decoder_learned_pos"]:
        raise _refuse(where, "learned positions on one side only")
    for key in ("decoder.project_in_dim.weight", "decoder.project_out_dim.weight"):
        if key in state:
            raise _refuse(where, f"{key.split('.')[1]} (a decoder narrower than its embeddings)")
    for side in ("encoder", "decoder"):
        version = state.get(f"{side}.version")
        if version is None or float(version.flatten()[0]) < 2:
            raise _refuse(where, f"{side}.version < 2 (an older fairseq layout; load and save it with fairseq 0.12)")


def separate_tables(a: dict[str, Any], state: dict) -> bool:
    """Whether the decoder needs its own embedding tables in xling: separate dictionaries or
    embeddings, or learned positions / layernorm_embedding that differ between the sides."""
    import torch

    if not a.get("share_all_embeddings"):
        return True
    for name in ("embed_positions.weight", "layernorm_embedding.weight", "layernorm_embedding.bias"):
        enc, dec = state.get(f"encoder.{name}"), state.get(f"decoder.{name}")
        if (enc is None) != (dec is None) or (enc is not None and not torch.equal(enc, dec)):
            return True
    return False


def xling_config(a: dict[str, Any], vocab_size: int, n_langs: int, padding_idx: int, separate: bool):
    """The Seq2SeqConfig reproducing fairseq's computation."""
    from xling.models.config import Seq2SeqConfig

    act = a.get("activation_fn", "relu")
    if act not in ("relu", "gelu"):
        raise XlingError(f"activation_fn {act!r}: xling has relu and gelu")
    learned = bool(a["encoder_learned_pos"])
    return Seq2SeqConfig(
        vocab_size=vocab_size, n_langs=n_langs, d_model=a["encoder_embed_dim"], n_layers=a["encoder_layers"],
        n_dec_layers=a["decoder_layers"], n_heads=a["encoder_attention_heads"], d_ff=a["encoder_ffn_embed_dim"],
        max_positions=max(a["max_source_positions"], a["max_target_positions"]),
        dropout=float(a.get("dropout", 0.1)), attn_dropout=float(a.get("attention_dropout", 0.0)), activation=act,
        pre_norm=bool(a["encoder_normalize_before"]), use_lang_embeddings=False, tie_embeddings=True,
        layer_norm_eps=1e-5, positions="learned" if learned else "sinusoidal", position_offset=padding_idx + 1,
        embed_scale=not a.get("no_scale_embedding", False), emb_norm=bool(a.get("layernorm_embedding")),
        lm_transform=False, lm_bias=True, source_bos=False, decoder_start="eos", separate_decoder_embeddings=separate,
        untied_output=separate and not (a.get("share_decoder_input_output_embed") or a.get("share_all_embeddings")))


def _attn(state: dict, src: str, dst: str, cross: bool) -> dict:
    import torch

    q, k, v = (state[f"{src}.{n}_proj.weight"] for n in "qkv")
    qb, kb, vb = (state[f"{src}.{n}_proj.bias"] for n in "qkv")
    out = {f"{dst}.out_proj.weight": state[f"{src}.out_proj.weight"], f"{dst}.out_proj.bias": state[f"{src}.out_proj.bias"]}
    if cross:
        out.update({f"{dst}.q_proj.weight": q, f"{dst}.q_proj.bias": qb,
                    f"{dst}.kv_proj.weight": torch.cat([k, v]), f"{dst}.kv_proj.bias": torch.cat([kb, vb])})
    else:
        out.update({f"{dst}.qkv_proj.weight": torch.cat([q, k, v]), f"{dst}.qkv_proj.bias": torch.cat([qb, kb, vb])})
    return out


def _norm(state: dict, src: str, dst: str) -> dict:
    return {f"{dst}.weight": state[f"{src}.weight"], f"{dst}.bias": state[f"{src}.bias"]}


def _tables(state: dict, side: str, a: dict[str, Any], rows: list[int], dst: str) -> dict:
    """One side's token / position tables and embedding norm, token rows in xling's order."""
    import torch

    out = {f"{dst}.tok_emb.weight": state[f"{side}.embed_tokens.weight"][torch.tensor(rows)]}
    if a[f"{side}_learned_pos"]:
        out[f"{dst}.pos_emb.weight"] = state[f"{side}.embed_positions.weight"]
    if a.get("layernorm_embedding"):
        out.update(_norm(state, f"{side}.layernorm_embedding", f"{dst}.emb_norm"))
    return out


def xling_state(state: dict, a: dict[str, Any], enc_rows: list[int], dec_rows: list[int], absent: list[int],
                separate: bool) -> dict:
    """fairseq parameter names and layouts -> TransformerSeq2Seq's: each side's embedding rows in
    the xling vocabulary's order (``*_rows[xling id]`` = the fairseq row); ids the fairseq decoder
    cannot emit get an output bias of -1e4 (never predicted: mass exp(-1e4) = 0, as in fairseq)."""
    import torch

    bias = torch.zeros(len(dec_rows))
    bias[torch.tensor(absent, dtype=torch.long)] = -1e4
    out = _tables(state, "encoder", a, enc_rows, "encoder")
    if separate:
        out.update(_tables(state, "decoder", a, dec_rows, "dec_embed"))
        proj = state.get("decoder.output_projection.weight", state.get("decoder.embed_out"))
        if proj is None:
            proj = state["decoder.embed_tokens.weight"]
        out["dec_head.weight"] = proj[torch.tensor(dec_rows)]
        out["dec_head.bias"] = bias
    else:
        out["encoder.lm_head.weight"], out["encoder.lm_head.bias"] = out["encoder.tok_emb.weight"], bias
    for side, n, dst in (("encoder", a["encoder_layers"], "encoder.layers"), ("decoder", a["decoder_layers"], "dec_layers")):
        for i in range(n):
            s, d = f"{side}.layers.{i}", f"{dst}.{i}"
            out.update(_attn(state, f"{s}.self_attn", f"{d}.self_attn", cross=False))
            out.update(_norm(state, f"{s}.self_attn_layer_norm", f"{d}.norm_attn"))
            if side == "decoder":
                out.update(_attn(state, f"{s}.encoder_attn", f"{d}.cross_attn", cross=True))
                out.update(_norm(state, f"{s}.encoder_attn_layer_norm", f"{d}.norm_cross"))
            for fc in ("fc1", "fc2"):
                out[f"{d}.ff.{fc}.weight"], out[f"{d}.ff.{fc}.bias"] = state[f"{s}.{fc}.weight"], state[f"{s}.{fc}.bias"]
            out.update(_norm(state, f"{s}.final_layer_norm", f"{d}.norm_ff"))
    if a["encoder_normalize_before"]:
        out.update(_norm(state, "encoder.layer_norm", "encoder.final_norm"))
        out.update(_norm(state, "decoder.layer_norm", "dec_final_norm"))
    return {k: v.float().contiguous() for k, v in out.items()}


def _load_dict(path: str | Path, rows: int, what: str):
    from xling.convert.fairseq_dict import FairseqDict

    fdict = FairseqDict.load(path)
    if len(fdict) != rows:
        raise XlingError(f"{path}: {len(fdict)} symbols (with the 4 specials) but the checkpoint's {what} embedding "
                         f"has {rows} rows: not this model's dictionary")
    return fdict


def convert(checkpoint: str | Path, dictionary: str | Path, spm: str | Path, out: str | Path,
            langs: list[str] | None = None, tgt_dictionary: str | Path | None = None) -> Path:
    """Convert and save; returns the model directory (``xling translate --model`` decodes it)."""
    from xling.convert.pickles import load_checkpoint_pickle
    from xling.convert.spm_vocab import rebuild
    from xling.models.seq2seq import TransformerSeq2Seq

    where = str(checkpoint)
    ckpt = load_checkpoint_pickle(checkpoint)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise XlingError(f"{where}: no 'model' state dict (not a fairseq checkpoint?)")
    state = ckpt["model"]
    a = model_args(ckpt, where)
    check_expressible(a, state, where)
    fdict = _load_dict(dictionary, state["encoder.embed_tokens.weight"].shape[0], "encoder")
    tdict = fdict if tgt_dictionary is None else _load_dict(
        tgt_dictionary, state["decoder.embed_tokens.weight"].shape[0], "decoder")
    if tgt_dictionary is None and state["decoder.embed_tokens.weight"].shape[0] != len(fdict):
        raise XlingError(f"{where}: the decoder has its own dictionary ({state['decoder.embed_tokens.weight'].shape[0]}"
                         f" rows): give it with --tgt-dict")
    if not Path(spm).is_file():
        raise XlingError(f"{spm}: no such SentencePiece model")
    specials = {"<s>": fdict.index("<s>"), "<pad>": fdict.index("<pad>"), "</s>": fdict.index("</s>"),
                "<unk>": fdict.index("<unk>")}
    tokens = list(fdict.symbols) + [t for t in tdict.symbols if t not in fdict]  # one xling vocabulary for both
    mapping = rebuild(Path(spm).read_bytes(), tokens, specials, langs or ["xx"], where=str(spm))
    pieces = [mapping.vocab._sp.id_to_piece(i) for i in range(len(mapping.vocab))]
    enc_rows, dec_rows = [fdict.index(p) for p in pieces], [tdict.index(p) for p in pieces]  # unknown: <unk>
    absent = [i for i, p in enumerate(pieces) if p not in tdict]  # the decoder never emits these
    separate = separate_tables(a, state)
    cfg = xling_config(a, len(mapping.vocab), len(mapping.vocab.languages), specials["<pad>"], separate)
    model = TransformerSeq2Seq(cfg)
    missing, unexpected = model.load_state_dict(xling_state(state, a, enc_rows, dec_rows, absent, separate),
                                                strict=False)
    tied = {"encoder.lm_head.weight", "encoder.lm_head.bias"} | ({"dec_head.weight"} if not cfg.untied_output else set())
    if set(missing) - tied or unexpected:
        raise XlingError(f"{where}: parameters do not fit: missing {sorted(set(missing) - tied)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    extra = {"converted": {"from": "fairseq", "checkpoint": Path(checkpoint).name, "arch": a["arch"],
                           "args": _jsonable(a), "symbols": list(fdict.symbols), "counts": list(fdict.counts),
                           **({"tgt_symbols": list(tdict.symbols), "tgt_counts": list(tdict.counts)}
                              if tdict is not fdict else {})}}
    return model.save_pretrained(out, vocab=mapping.vocab, extra=extra)


def _jsonable(a: dict[str, Any]) -> dict[str, Any]:
    """The model arguments that JSON can hold (what an export back to fairseq writes again)."""
    return {k: v for k, v in a.items() if isinstance(v, (str, int, float, bool, type(None)))
            or (isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v))}


def _add_arguments(p) -> None:
    from xling.commands import args as A

    p.add_argument("--dict", required=True, help="the model's (source) dict.txt")
    p.add_argument("--tgt-dict", help="the target dict.txt, when the model has separate dictionaries")
    p.add_argument("--spm", required=True, help="the SentencePiece model the dictionary's tokens come from")
    p.add_argument("--langs", type=A.lang_list, default="", help="language codes to record, e.g. en,fr "
                   "(the model has no language embeddings; xling translate names them)")


def _run(args) -> int:
    langs = [x for x in args.langs.split(",") if x] or None
    out = convert(args.input, args.dict, args.spm, args.out, langs, args.tgt_dict)
    print(f"xling convert fairseq: {args.input} -> {out}")
    return 0


register_converter(Converter(
    name="fairseq", help="fairseq transformer translation checkpoint -> xling encoder-decoder",
    run=_run, add_arguments=_add_arguments, input_help="checkpoint_best.pt (or any fairseq transformer checkpoint)"))
