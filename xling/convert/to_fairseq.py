"""An xling encoder-decoder -> a fairseq ``transformer`` checkpoint, dictionary and SentencePiece model.

    xling convert to-fairseq --input MODEL_DIR --out DIR [--src-lang en --tgt-lang fr]
    # DIR: checkpoint.pt, dict.txt (= dict.{src,tgt}.txt for fairseq's translation task), spm.model

A model converted from fairseq (``xling convert fairseq``) goes back bit for bit (its dictionary
order and arguments are in its record). A model xling trained is exported when fairseq's
``transformer`` can compute exactly what it computes:

- sources ``x </s>`` (train with ``model.source_bos: false``), a plain output projection without
  bias (``lm_transform: false``, ``lm_bias: false``): fairseq has no way to express the others;
- with learned positions, xling's table moves to fairseq's offset (row ``padding_idx + 1 + i``);
  language embeddings are folded into the position tables of one direction (``--src-lang``,
  ``--tgt-lang``: encoder rows + the source language's vector, decoder rows + the target's);
  decoding from ``<s>`` is folded into the decoder's first position row (fairseq feeds ``</s>``
  there: the row gets ``scale * (emb[<s>] - emb[</s>])`` added; ``</s>`` is never a decoder input
  elsewhere). Sinusoidal tables are not stored, so these folds need learned positions;
- the dictionary of a native model lists every xling piece in xling's order, ``<mask>`` included,
  and is not padded with ``madeupword`` entries: extra rows would take probability mass the xling
  model never gives, and fairseq's log-probabilities would differ from xling's.

What cannot be expressed is refused with every reason named.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from xling.convert.registry import Converter, register_converter
from xling.errors import XlingError


FAIRSEQ_OFFSET = 2  # fairseq's learned positions: token i at row padding_idx + 1 + i


def check_exportable(cfg, where: str, biased: bool = False) -> None:
    """Refuse what fairseq's transformer cannot express (every reason, with the setting to train with);
    ``biased``: the output bias is not zero on the exported rows (a model converted from fairseq has
    -1e4 only on the rows its dictionary lacks, which are not exported)."""
    why = []
    if cfg.source_bos:
        why.append("sources start with <s> (fairseq's translation task feeds x </s>; train with model.source_bos: false)")
    if cfg.lm_transform:
        why.append("the LM head has an XLM-style transform (fairseq's is a plain projection; lm_transform: false)")
    if biased:
        why.append("the output projection has a bias (fairseq's has none; lm_bias: false)")
    if cfg.cross_out_per_lang:
        why.append("one cross-attention output projection per language (MASS; fairseq's transformer has one)")
    if cfg.positions != "learned":  # nothing stored to fold into
        if cfg.decoder_start != "eos":
            why.append("decoding starts from <s> with sinusoidal positions (fairseq starts from </s>; the start "
                       "token is folded into a learned position row only)")
        if cfg.use_lang_embeddings:
            why.append("language embeddings with sinusoidal positions (folded into learned position tables only)")
        if cfg.position_offset != FAIRSEQ_OFFSET:
            why.append(f"sinusoidal positions at offset {cfg.position_offset} (fairseq's is padding_idx + 1 = 2)")
    if why:
        raise XlingError(f"{where}: fairseq's transformer cannot express this model: {'; '.join(why)}")


def position_table(table, cfg, every=None, first=None):
    """xling's learned position table -> fairseq's (rows ``2 + i`` = xling's ``offset + i``), plus
    ``every`` (D,) on every row and ``first`` (D,) on the first token's row (the folds). The same
    tensor when there is nothing to move or add (a converted fairseq model goes back bit for bit)."""
    if cfg.position_offset != FAIRSEQ_OFFSET:
        moved = table.new_zeros(cfg.max_positions + FAIRSEQ_OFFSET, table.shape[1])
        moved[FAIRSEQ_OFFSET:] = table[cfg.position_offset: cfg.position_offset + cfg.max_positions]
        table = moved
    if every is not None:
        table = table + every
    if first is not None:
        table = table.clone()
        table[FAIRSEQ_OFFSET] += first
    return table


def folds(state: dict, cfg, src_lang: int | None, tgt_lang: int | None) -> dict[str, tuple]:
    """``{side: (every, first)}`` for :func:`position_table`: the language vectors of the exported
    direction and, decoding from <s>, ``scale * (emb[<s>] - emb[</s>])`` at the decoder's first row."""
    import math

    from xling.tokenization.vocab import BOS, EOS

    dec = "dec_embed" if cfg.separate_decoder_embeddings else "encoder"
    every = {"encoder": None, "decoder": None}
    if cfg.use_lang_embeddings:
        every = {"encoder": state["encoder.lang_emb.weight"][src_lang],
                 "decoder": state[f"{dec}.lang_emb.weight"][tgt_lang]}
    first = None
    if cfg.decoder_start != "eos":
        tok = state[f"{dec}.tok_emb.weight"]
        first = (tok[BOS] - tok[EOS]) * (math.sqrt(cfg.d_model) if cfg.embed_scale else 1.0)
    return {"encoder": (every["encoder"], None), "decoder": (every["decoder"], first)}


def _split_attn(state: dict, src: str, dst: str) -> dict:
    out = {f"{dst}.out_proj.weight": state[f"{src}.out_proj.weight"], f"{dst}.out_proj.bias": state[f"{src}.out_proj.bias"]}
    if f"{src}.qkv_proj.weight" in state:
        for kind in ("weight", "bias"):
            for name, t in zip("qkv", state[f"{src}.qkv_proj.{kind}"].chunk(3)):
                out[f"{dst}.{name}_proj.{kind}"] = t
    else:
        for kind in ("weight", "bias"):
            out[f"{dst}.q_proj.{kind}"] = state[f"{src}.q_proj.{kind}"]
            k, v = state[f"{src}.kv_proj.{kind}"].chunk(2)
            out[f"{dst}.k_proj.{kind}"], out[f"{dst}.v_proj.{kind}"] = k, v
    return out


def fairseq_state(state: dict, cfg, rows: list[int], tgt_rows: list[int] | None = None,
                  langs: tuple[int, int] | None = None) -> dict:
    """TransformerSeq2Seq parameters -> fairseq's names; ``rows[j]`` = the xling id of fairseq
    (source) row j, ``tgt_rows`` the same for the target dictionary (default: ``rows``); ``langs``:
    the (source, target) language ids whose embeddings are folded (models with language embeddings)."""
    import torch

    tgt_rows = rows if tgt_rows is None else tgt_rows
    fold = folds(state, cfg, *(langs or (None, None)))
    dec = "dec_embed" if cfg.separate_decoder_embeddings else "encoder"  # where the decoder's tables live
    head = "dec_head" if cfg.separate_decoder_embeddings else "encoder.lm_head"
    out: dict = {"encoder.embed_tokens.weight": state["encoder.tok_emb.weight"][torch.tensor(rows)],
                 "decoder.embed_tokens.weight": state[f"{dec}.tok_emb.weight"][torch.tensor(tgt_rows)],
                 "decoder.output_projection.weight": state[f"{head}.weight"][torch.tensor(tgt_rows)]}
    for side, tables in (("encoder", "encoder"), ("decoder", dec)):
        out[f"{side}.version"] = torch.tensor([3.0])
        if cfg.positions == "sinusoidal":
            out[f"{side}.embed_positions._float_tensor"] = torch.zeros(1)  # fairseq: a dtype holder
        else:
            out[f"{side}.embed_positions.weight"] = position_table(state[f"{tables}.pos_emb.weight"], cfg, *fold[side])
        if cfg.emb_norm:
            for kind in ("weight", "bias"):
                out[f"{side}.layernorm_embedding.{kind}"] = state[f"{tables}.emb_norm.{kind}"]
    norms = {"norm_attn": "self_attn_layer_norm", "norm_cross": "encoder_attn_layer_norm", "norm_ff": "final_layer_norm"}
    for side, n, src in (("encoder", cfg.n_layers, "encoder.layers"), ("decoder", cfg.n_dec_layers, "dec_layers")):
        for i in range(n):
            s, d = f"{src}.{i}", f"{side}.layers.{i}"
            out.update(_split_attn(state, f"{s}.self_attn", f"{d}.self_attn"))
            if side == "decoder":
                out.update(_split_attn(state, f"{s}.cross_attn", f"{d}.encoder_attn"))
            for mine, theirs in norms.items():
                if f"{s}.{mine}.weight" in state:
                    for kind in ("weight", "bias"):
                        out[f"{d}.{theirs}.{kind}"] = state[f"{s}.{mine}.{kind}"]
            for fc in ("fc1", "fc2"):
                for kind in ("weight", "bias"):
                    out[f"{d}.{fc}.{kind}"] = state[f"{s}.ff.{fc}.{kind}"]
    if cfg.pre_norm:
        for side, mine in (("encoder", "encoder.final_norm"), ("decoder", "dec_final_norm")):
            for kind in ("weight", "bias"):
                out[f"{side}.layer_norm.{kind}"] = state[f"{mine}.{kind}"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _args(cfg, record: dict[str, Any]) -> dict[str, Any]:
    """fairseq's model arguments: the recorded ones of a converted model, else from the config."""
    if record.get("args"):
        return dict(record["args"])
    return dict(arch="transformer", encoder_embed_dim=cfg.d_model, decoder_embed_dim=cfg.d_model,
                encoder_ffn_embed_dim=cfg.d_ff, decoder_ffn_embed_dim=cfg.d_ff, encoder_layers=cfg.n_layers,
                decoder_layers=cfg.n_dec_layers, encoder_attention_heads=cfg.n_heads,
                decoder_attention_heads=cfg.n_heads, encoder_normalize_before=cfg.pre_norm,
                decoder_normalize_before=cfg.pre_norm, encoder_learned_pos=cfg.positions == "learned",
                decoder_learned_pos=cfg.positions == "learned", no_scale_embedding=not cfg.embed_scale,
                layernorm_embedding=cfg.emb_norm, activation_fn=cfg.activation, dropout=cfg.dropout,
                attention_dropout=cfg.attn_dropout, share_all_embeddings=not cfg.separate_decoder_embeddings,
                share_decoder_input_output_embed=not cfg.untied_output,
                max_source_positions=cfg.max_positions, max_target_positions=cfg.max_positions)


def export(model_dir: str | Path, out: str | Path, src_lang: str | None = None, tgt_lang: str | None = None) -> Path:
    """Write ``checkpoint.pt``, ``dict.txt`` / ``dict.src.txt`` / ``dict.tgt.txt`` and ``spm.model``;
    ``src_lang`` / ``tgt_lang``: the direction whose language embeddings are folded (required when
    the model has language embeddings, refused otherwise)."""
    import torch

    from xling.convert.fairseq_dict import FairseqDict
    from xling.models.io import read_model_config
    from xling.models.seq2seq import TransformerSeq2Seq
    from xling.tokenization.vocab import MASK, Vocab
    from xling.utils.io import atomic_dir

    meta = read_model_config(model_dir)
    if meta.get("model_type") != TransformerSeq2Seq.model_type:
        raise XlingError(f"{model_dir}: a {meta.get('model_type')}, not an encoder-decoder (transformer_seq2seq)")
    model = TransformerSeq2Seq.from_pretrained(model_dir)
    cfg = model.config
    vocab = Vocab.load(model_dir)
    if not (Path(model_dir) / "spm.model").is_file():
        raise XlingError(f"{model_dir}: its vocabulary is not SentencePiece ({vocab.meta.get('backend', '?')} backend, "
                         "e.g. converted from XLM / MASS); the fairseq export writes a SentencePiece model")
    record = (meta.get("extra") or {}).get("converted") or {}
    if record.get("symbols"):  # converted from fairseq: its own dictionaries, in their order
        fdict = FairseqDict(list(record["symbols"]), list(record["counts"]))
        tdict = FairseqDict(list(record["tgt_symbols"]), list(record["tgt_counts"])) if record.get("tgt_symbols") \
            else fdict
    else:  # every piece from <mask> on, in xling's order, not padded (see the module's docstring)
        fdict = tdict = FairseqDict.from_tokens([vocab.id_to_piece(i) for i in range(MASK, len(vocab))],
                                                padding_factor=1, what=str(model_dir))

    def rows_of(d) -> list[int]:
        rows = []
        for tok in d.symbols:
            xid = vocab._sp.piece_to_id(tok)
            if vocab._sp.id_to_piece(xid) != tok:
                raise XlingError(f"{model_dir}: dictionary token {tok!r} is not in the model's vocabulary")
            rows.append(xid)
        return rows

    rows, tgt_rows = rows_of(fdict), rows_of(tdict)
    state = model.state_dict()
    bias = state.get(("dec_head" if cfg.separate_decoder_embeddings else "encoder.lm_head") + ".bias")
    check_exportable(cfg, str(model_dir), bias is not None and bool(bias[torch.tensor(tgt_rows)].any()))
    if cfg.use_lang_embeddings:
        if not (src_lang and tgt_lang):
            raise XlingError(f"{model_dir}: the model has language embeddings; give --src-lang and --tgt-lang, the "
                             f"direction to export (its languages: {', '.join(vocab.languages)})")
        langs = (vocab.lang_id(src_lang), vocab.lang_id(tgt_lang))
    elif src_lang or tgt_lang:
        raise XlingError(f"{model_dir}: the model has no language embeddings; --src-lang / --tgt-lang fold nothing, "
                         "leave them out")
    else:
        langs = None
    state = fairseq_state(state, cfg, rows, tgt_rows, langs)
    ckpt = {"args": argparse.Namespace(**_args(cfg, record)), "model": state, "extra_state": {"epoch": 1},
            "optimizer_history": [{"criterion_name": "LabelSmoothedCrossEntropyCriterion", "optimizer_name": "Adam",
                                   "lr_scheduler_state": {}, "num_updates": 0}], "last_optimizer_state": None}
    spm_bytes = (Path(model_dir) / "spm.model").read_bytes()
    with atomic_dir(out) as tmp:
        torch.save(ckpt, tmp / "checkpoint.pt")
        for name, d in (("dict.txt", fdict), ("dict.src.txt", fdict), ("dict.tgt.txt", tdict)):
            d.save(tmp / name)
        (tmp / "spm.model").write_bytes(spm_bytes)
    return Path(out)


def _run(args) -> int:
    out = export(args.input, args.out, args.src_lang, args.tgt_lang)
    print(f"xling convert to-fairseq: {args.input} -> {out} (checkpoint.pt, dict.txt, spm.model)")
    return 0


def _add_arguments(p) -> None:
    from xling.commands import args as A

    p.add_argument("--src-lang", type=A.lang, help="models with language embeddings: the source language of the "
                   "exported direction (its embedding is folded into the encoder's position table)")
    p.add_argument("--tgt-lang", type=A.lang, help="models with language embeddings: the target language (folded "
                   "into the decoder's)")


register_converter(Converter(
    name="to-fairseq", help="xling encoder-decoder -> fairseq transformer checkpoint (fairseq-generate decodes it)",
    run=_run, add_arguments=_add_arguments, input_help="an xling model directory (transformer_seq2seq)",
    out_help="output directory: checkpoint.pt, dict.txt, spm.model (replaced as a whole)"))
