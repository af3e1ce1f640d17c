"""Original XLM and MASS checkpoints -> an xling encoder or encoder-decoder with a BPE vocabulary.

    xling convert xlm --input mlm_enfr_1024.pth  --codes codes_enfr --out DIR   # -> TransformerEncoder
    xling convert xlm --input mass_enfr_1024.pth --codes codes_enfr --out DIR   # -> TransformerSeq2Seq
                      [--lowercase auto|yes|no] [--langs en,fr]

The file (facebookresearch/XLM's or microsoft/MASS's ``trainer.save_checkpoint``, a pickle read
with ``weights_only`` and the numpy allow group) holds ``model`` (an encoder: ``mlm_*``,
``tlm_*``, ``clm_*``) or ``encoder`` + ``decoder`` (machine translation, MASS), ``params`` (the
training options, a dict) and the dictionary (``dico_id2word`` / ``dico_word2id`` /
``dico_counts``). The model is XLM's transformer, expressed with xling's options: post-norm,
LayerNorm eps 1e-12, GELU (``gelu_activation``) or ReLU, no embedding scaling, a learned 0-based
position table (XLM's sinusoidal table, ``sinusoidal_embeddings``, is stored in the file like a
learned one and kept as it is), language embeddings (XLM's ids; none when ``n_langs`` is 1 or
``use_lang_emb`` is off), an embedding LayerNorm, a plain output projection with bias
(``pred_layer.proj``, tied to the embeddings with ``share_inout_emb``). An encoder-decoder keeps
XLM's separate decoder tables and output layer, and MASS's per-language cross-attention output
projections (``encoder_attn.i.out_lin.{lang}``: ``Seq2SeqConfig.cross_out_per_lang``).

Token ids. XLM's dictionary is ``<s> </s> <pad> <unk> <special0..9>`` then the words by
frequency; XLM feeds a sentence as ``</s> x </s>`` and starts decoding from ``</s>``. xling's
ids are fixed (``<pad> <unk> <s> </s> <mask>``) and it feeds ``<s> x </s>`` and starts from
``<s>``: both of xling's ``<s>`` and ``</s>`` carry XLM's ``</s>`` row, so xling computes what
XLM computes on XLM's input; xling's ``<s>`` gets an output bias of -1e4 (XLM's ``</s>`` keeps
its one probability, under xling's ``</s>``). ``<mask>`` carries XLM's mask word ``<special1>``.
XLM's ``<s>`` (``<xlm:s>``) and the other ``<special*>`` follow as control tokens (kept: they
count in the softmax; never produced by tokenization), then the words in XLM's order.

Text. The vocabulary (:class:`xling.tokenization.bpe.BpeVocab`) runs XLM's preprocessing with
the text's language (:mod:`xling.tokenization.moses`) and applies the BPE codes given with
``--codes``; XLM lowercased and stripped accents for most released models (not XLM-17/100):
``--lowercase auto`` decides from the dictionary (lowercased when no word has an upper-case
letter). Refused, naming the reason: adaptive softmax (``asm``), product-key memory layers
(``use_memory``), MASS's ``attention_setting`` v2 (a whole cross-attention per language).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xling.convert.registry import Converter, register_converter
from xling.errors import XlingError

XLM_SPECIALS = ["<s>", "</s>", "<pad>", "<unk>"] + [f"<special{i}>" for i in range(10)]
MASK_WORD = "<special1>"  # XLM's mask token
XLM_BOS_NAME = "<xlm:s>"  # XLM's <s>, whose name xling's <s> holds
STEPS = ["moses_unicode_punct", "moses_punct", "nonprint", "moses_tokenize"]  # XLM's tools/tokenize.sh
LOWERCASE_STEP = "lowercase_accents"  # XLM's tools/lowercase_and_remove_accent.py
REQUIRED = ("emb_dim", "n_layers", "n_heads", "n_langs", "n_words")
DEFAULTS = dict(dropout=0.0, attention_dropout=0.0, gelu_activation=False, share_inout_emb=True, use_lang_emb=True,
                asm=False, use_memory=False, english_only=False, attention_setting="v1")  # XLM / MASS's defaults


def _params(ckpt: dict, where: str) -> dict[str, Any]:
    """``params`` completed with XLM's defaults; missing fields and unsupported settings refused."""
    p = ckpt.get("params")
    if not isinstance(p, dict):
        raise XlingError(f"{where}: no 'params' dict (not an XLM / MASS checkpoint?)")
    missing = [k for k in REQUIRED if k not in p]
    if missing:
        raise XlingError(f"{where}: params lacks {', '.join(missing)} (not an XLM / MASS checkpoint?)")
    p = {**DEFAULTS, **p}
    for key, why in (("asm", "adaptive softmax (asm)"), ("use_memory", "product-key memory layers (use_memory)")):
        if p[key]:
            raise XlingError(f"{where}: not supported: {why}")
    for key in REQUIRED:
        if not isinstance(p[key], int) or p[key] <= 0:
            raise XlingError(f"{where}: params {key} must be a positive integer, got {p[key]!r}")
    return p


def _languages(p: dict[str, Any], names: list[str] | None, where: str) -> list[str]:
    """Language codes in XLM's id order (``id2lang`` / ``lang2id``), or ``names`` given instead."""
    from xling.tokenization.langs import check_langs

    n = p["n_langs"]
    id2lang = p.get("id2lang") or {i: lang for lang, i in (p.get("lang2id") or {}).items()}
    if names is None:
        if not isinstance(id2lang, dict) or sorted(id2lang) != list(range(n)):
            raise XlingError(f"{where}: params has no id2lang / lang2id for its {n} languages")
        names = [id2lang[i] for i in range(n)]
        return check_langs(names, f"{where}: params id2lang (rename them with --langs)")
    if len(names) != n:
        raise XlingError(f"--langs: {len(names)} codes given, the model has {n} languages")
    return names


def _dictionary(ckpt: dict, rows: int, where: str) -> list[str]:
    """XLM's words in id order, checked as XLM's ``Dictionary.check_valid`` does."""
    id2word, word2id = ckpt.get("dico_id2word"), ckpt.get("dico_word2id")
    if not isinstance(id2word, dict) or not isinstance(word2id, dict):
        raise XlingError(f"{where}: no dico_id2word / dico_word2id (not an XLM / MASS checkpoint?)")
    if (not all(isinstance(k, int) for k in id2word) or sorted(id2word) != list(range(len(id2word)))
            or not all(isinstance(w, str) for w in id2word.values())):
        raise XlingError(f"{where}: dico_id2word is not a list of words by id 0..n-1")
    words = [id2word[i] for i in range(len(id2word))]
    if words[: len(XLM_SPECIALS)] != XLM_SPECIALS:
        raise XlingError(f"{where}: the dictionary starts with {words[:4]}, expected XLM's {XLM_SPECIALS[:4]} ...")
    if any(word2id.get(w) != i for i, w in enumerate(words)) or len(word2id) != len(words):
        raise XlingError(f"{where}: dico_word2id does not match dico_id2word")
    if len(words) != rows:
        raise XlingError(f"{where}: the dictionary has {len(words)} words but the embeddings have {rows} rows")
    return words


def vocab_rows(words: list[str]) -> tuple[list[str], list[int], int]:
    """xling's tokens, the XLM row of each xling id, and the number of control ids (module doc)."""
    from xling.tokenization.vocab import SPECIAL_TOKENS

    mask = words.index(MASK_WORD)
    rest = [r for r in range(4, len(words)) if r != mask]  # <special*> but the mask, then the words
    rows = [2, 3, 1, 1, mask, 0, *rest]  # <pad> <unk> <s> </s> <mask> <xlm:s> ...
    tokens = [*SPECIAL_TOKENS, XLM_BOS_NAME, *(words[r] for r in rest)]
    return tokens, rows, len(SPECIAL_TOKENS) + len(XLM_SPECIALS) - 4


def _strip_module(state: Any, name: str, where: str) -> dict:
    import torch

    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise XlingError(f"{where}: '{name}' is not a state dict (names -> tensors)")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _cross_out(dec: dict, n_layers: int, n_langs: int, p: dict, where: str) -> bool:
    """Whether the decoder has MASS's per-language cross-attention output projections."""
    if "encoder_attn.0.0.q_lin.weight" in dec or p["attention_setting"] != "v1":
        setting = p["attention_setting"] if p["attention_setting"] != "v1" else "v2"  # v2's layout, whatever params say
        raise XlingError(f"{where}: MASS attention_setting {setting!r} (a whole cross-attention per language) is not "
                         "supported; v1 (one output projection per language) is")
    if "encoder_attn.0.out_lin.weight" in dec:
        return False
    if not all(f"encoder_attn.{i}.out_lin.{lang}.weight" in dec for i in range(n_layers) for lang in range(n_langs)):
        raise XlingError(f"{where}: the decoder has no cross-attention (encoder_attn.i.out_lin) for every layer")
    return True


def model_config(p: dict[str, Any], enc: dict, dec: dict | None, n_tokens: int, where: str):
    """The EncoderConfig (``dec`` None) or Seq2SeqConfig reproducing XLM's computation."""
    from xling.models.config import EncoderConfig, Seq2SeqConfig

    if "layer_norm_emb.weight" not in enc or "position_embeddings.weight" not in enc:
        raise XlingError(f"{where}: no layer_norm_emb / position_embeddings (not XLM's transformer layout)")
    d, n_langs = p["emb_dim"], p["n_langs"]
    lang_emb = n_langs > 1 and p["use_lang_emb"] and not p["english_only"]
    for side in [enc] + ([dec] if dec is not None else []):
        if lang_emb != ("lang_embeddings.weight" in side):
            raise XlingError(f"{where}: lang_embeddings {'missing' if lang_emb else 'present'} although params "
                             f"say n_langs={n_langs}, use_lang_emb={p['use_lang_emb']}")
    fields = dict(
        vocab_size=n_tokens, n_langs=n_langs, d_model=d, n_layers=p["n_layers"], n_heads=p["n_heads"],
        d_ff=enc["ffns.0.lin1.weight"].shape[0] if "ffns.0.lin1.weight" in enc else 4 * d,
        max_positions=enc["position_embeddings.weight"].shape[0], dropout=float(p["dropout"]),
        attn_dropout=float(p["attention_dropout"]), activation="gelu" if p["gelu_activation"] else "relu",
        pre_norm=False, use_lang_embeddings=lang_emb, tie_embeddings=bool(p["share_inout_emb"]), pad_id=0,
        layer_norm_eps=1e-12, positions="learned", position_offset=0, embed_scale=False, emb_norm=True,
        lm_transform=False, lm_bias=True)
    n_dec = p.get("n_dec_layers") or p["n_layers"]  # MASS has its own; XLM's decoder is as deep as its encoder
    per_lang = dec is not None and _cross_out(dec, n_dec, n_langs, p, where)
    try:
        if dec is None:
            return EncoderConfig(**fields)
        return Seq2SeqConfig(**fields, n_dec_layers=n_dec, source_bos=True, decoder_start="bos",
                             separate_decoder_embeddings=True, untied_output=not p["share_inout_emb"],
                             cross_out_per_lang=per_lang)
    except XlingError as e:
        raise XlingError(f"{where}: params do not make a valid model ({e})") from None


def _linear(src: dict, s: str, dst: str) -> dict:
    return {f"{dst}.weight": src[f"{s}.weight"], f"{dst}.bias": src[f"{s}.bias"]}


def _layers(src: dict, n: int, dst: str, cfg, decoder: bool) -> dict:
    """XLM's layer lists (attentions.i, layer_norm1.i, [encoder_attn.i, layer_norm15.i], ffns.i,
    layer_norm2.i) -> xling's TransformerLayer stack ``dst``."""
    import torch

    out = {}
    for i in range(n):
        d = f"{dst}.{i}"
        a = f"attentions.{i}"
        out[f"{d}.self_attn.qkv_proj.weight"] = torch.cat([src[f"{a}.{x}_lin.weight"] for x in "qkv"])
        out[f"{d}.self_attn.qkv_proj.bias"] = torch.cat([src[f"{a}.{x}_lin.bias"] for x in "qkv"])
        out.update(_linear(src, f"{a}.out_lin", f"{d}.self_attn.out_proj"))
        out.update(_linear(src, f"layer_norm1.{i}", f"{d}.norm_attn"))
        if decoder:
            c = f"encoder_attn.{i}"
            out.update(_linear(src, f"{c}.q_lin", f"{d}.cross_attn.q_proj"))
            out[f"{d}.cross_attn.kv_proj.weight"] = torch.cat([src[f"{c}.k_lin.weight"], src[f"{c}.v_lin.weight"]])
            out[f"{d}.cross_attn.kv_proj.bias"] = torch.cat([src[f"{c}.k_lin.bias"], src[f"{c}.v_lin.bias"]])
            if cfg.cross_out_per_lang:
                langs = range(cfg.n_langs)
                out[f"{d}.cross_attn.out_proj.weight"] = torch.stack([src[f"{c}.out_lin.{k}.weight"] for k in langs])
                out[f"{d}.cross_attn.out_proj.bias"] = torch.stack([src[f"{c}.out_lin.{k}.bias"] for k in langs])
            else:
                out.update(_linear(src, f"{c}.out_lin", f"{d}.cross_attn.out_proj"))
            out.update(_linear(src, f"layer_norm15.{i}", f"{d}.norm_cross"))
        out.update(_linear(src, f"ffns.{i}.lin1", f"{d}.ff.fc1"))
        out.update(_linear(src, f"ffns.{i}.lin2", f"{d}.ff.fc2"))
        out.update(_linear(src, f"layer_norm2.{i}", f"{d}.norm_ff"))
    return out


def _tables(src: dict, rows: list[int], dst: str, head: str, cfg, tied: bool) -> dict:
    """Token rows in xling's order, positions, language embeddings, embedding norm ``dst.*``
    and the output layer ``head`` (``pred_layer.proj``, ``tied`` to the token rows or not; zero
    bias when the file has none). xling's <s> (id 2, a second copy of XLM's </s>) gets the
    output bias -1e4."""
    import torch

    index = torch.tensor(rows)
    emb = src["embeddings.weight"]
    out = {f"{dst}.tok_emb.weight": emb[index], f"{dst}.pos_emb.weight": src["position_embeddings.weight"]}
    if cfg.use_lang_embeddings:
        out[f"{dst}.lang_emb.weight"] = src["lang_embeddings.weight"]
    out.update(_linear(src, "layer_norm_emb", f"{dst}.emb_norm"))
    weight = src.get("pred_layer.proj.weight", emb)
    bias = src.get("pred_layer.proj.bias", torch.zeros(emb.shape[0]))[index].clone()
    bias[2] = -1e4
    out[f"{head}.bias"] = bias
    out[f"{head}.weight"] = out[f"{dst}.tok_emb.weight"] if tied else weight[index]
    return out


def xling_state(enc: dict, dec: dict | None, rows: list[int], cfg) -> dict:
    """XLM's parameter names and layouts -> TransformerEncoder's (``dec`` None) or TransformerSeq2Seq's."""
    if dec is None:
        out = {**_tables(enc, rows, "", "lm_head", cfg, cfg.tie_embeddings),
               **_layers(enc, cfg.n_layers, "layers", cfg, False)}
        out = {k.lstrip("."): v for k, v in out.items()}
    else:
        out = {**_tables(enc, rows, "encoder", "encoder.lm_head", cfg, cfg.tie_embeddings),
               **_layers(enc, cfg.n_layers, "encoder.layers", cfg, False),
               **_tables(dec, rows, "dec_embed", "dec_head", cfg, not cfg.untied_output),
               **_layers(dec, cfg.n_dec_layers, "dec_layers", cfg, True)}
    return {k: v.float().contiguous() for k, v in out.items()}


def _used(src: dict, cfg, n_layers: int, decoder: bool) -> set[str]:
    """The names of ``src`` that the conversion reads (to report the others)."""
    keys = {"embeddings.weight", "position_embeddings.weight", "lang_embeddings.weight", "layer_norm_emb.weight",
            "layer_norm_emb.bias", "pred_layer.proj.weight", "pred_layer.proj.bias"}
    subs = ["attentions.{}.q_lin", "attentions.{}.k_lin", "attentions.{}.v_lin", "attentions.{}.out_lin",
            "layer_norm1.{}", "ffns.{}.lin1", "ffns.{}.lin2", "layer_norm2.{}"]
    if decoder:
        subs += ["encoder_attn.{}.q_lin", "encoder_attn.{}.k_lin", "encoder_attn.{}.v_lin", "layer_norm15.{}"]
        outs = [f"encoder_attn.{{}}.out_lin.{k}" for k in range(cfg.n_langs)] if cfg.cross_out_per_lang else \
            ["encoder_attn.{}.out_lin"]
        subs += outs
    return keys | {f"{s.format(i)}.{w}" for s in subs for i in range(n_layers) for w in ("weight", "bias")}


def _check_keys(src: dict, cfg, n_layers: int, decoder: bool, name: str, where: str) -> None:
    used = _used(src, cfg, n_layers, decoder)
    extra = sorted(set(src) - used)
    if extra:
        raise XlingError(f"{where}: '{name}' has parameters XLM's transformer does not ({', '.join(extra[:3])}); "
                         "params and weights disagree (n_layers?)")
    needed = used - {"lang_embeddings.weight", "pred_layer.proj.weight", "pred_layer.proj.bias"}
    missing = sorted(needed - set(src))
    if missing:
        raise XlingError(f"{where}: '{name}' lacks {', '.join(missing[:3])} (params and weights disagree?)")


def convert(checkpoint: str | Path, codes: str | Path, out: str | Path, lowercase: str = "auto",
            langs: list[str] | None = None) -> Path:
    """Convert and save; returns the model directory (module doc)."""
    from xling.convert.pickles import XLM, load_checkpoint_pickle
    from xling.tokenization.bpe import BpeVocab, read_codes

    where = str(checkpoint)
    codes_text = read_codes(codes)
    ckpt = load_checkpoint_pickle(checkpoint, allow=XLM)
    p = _params(ckpt, where)
    if "model" in ckpt:
        enc, dec = _strip_module(ckpt["model"], "model", where), None
    elif "encoder" in ckpt:
        enc = _strip_module(ckpt["encoder"], "encoder", where)
        dec = _strip_module(ckpt["decoder"], "decoder", where) if "decoder" in ckpt else None
    else:
        raise XlingError(f"{where}: no 'model' or 'encoder' state dict (not an XLM / MASS checkpoint?)")
    if "embeddings.weight" not in enc:
        raise XlingError(f"{where}: no embeddings.weight (not XLM's transformer layout)")
    rows_in_file = enc["embeddings.weight"].shape[0]
    words = _dictionary(ckpt, rows_in_file, where)
    if p["n_words"] != rows_in_file or (dec is not None and dec.get("embeddings.weight", enc["embeddings.weight"])
                                        .shape[0] != rows_in_file):
        raise XlingError(f"{where}: params n_words={p['n_words']} but the embeddings have {rows_in_file} rows")
    if lowercase not in ("auto", "yes", "no"):
        raise XlingError(f"--lowercase: {lowercase!r} is not one of auto, yes, no")
    lower = (lowercase == "yes" or lowercase == "auto"
             and not any(w != w.lower() for w in words[len(XLM_SPECIALS):]))
    languages = _languages(p, langs, where)
    tokens, rows, control = vocab_rows(words)
    cfg = model_config(p, enc, dec, len(tokens), where)
    _check_keys(enc, cfg, cfg.n_layers, False, "model" if dec is None else "encoder", where)
    if dec is not None:
        _check_keys(dec, cfg, cfg.n_dec_layers, True, "decoder", where)
    meta = {"normalize": STEPS + ([LOWERCASE_STEP] if lower else []), "converted_from": Path(checkpoint).name}
    vocab = BpeVocab(codes_text, tokens, languages, meta, control=control, source=str(codes))
    if dec is None:
        from xling.models.encoder import TransformerEncoder as Model
    else:
        from xling.models.seq2seq import TransformerSeq2Seq as Model
    model = Model(cfg)
    try:
        missing, unexpected = model.load_state_dict(xling_state(enc, dec, rows, cfg), strict=False)
    except RuntimeError as e:  # shapes that params do not announce (torch: "size mismatch for ...")
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise XlingError(f"{where}: the weights do not fit params (emb_dim={p['emb_dim']}...): {detail}") from None
    if missing or unexpected:  # a converter bug, not the user's file: the checks above passed
        raise XlingError(f"{where}: parameters do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    kind = "mass" if dec is not None and cfg.cross_out_per_lang else "xlm"
    extra = {"converted": {"from": kind, "checkpoint": Path(checkpoint).name, "codes": Path(codes).name,
                           "lowercase": {"option": lowercase, "applied": lower},
                           "params": _jsonable(p), "dico_counts": _counts(ckpt, words)}}
    return model.save_pretrained(out, vocab=vocab, extra=extra)


def _counts(ckpt: dict, words: list[str]) -> list[int] | None:
    """XLM's word counts in its id order (what ``dico_counts`` holds), when they are integers."""
    counts = ckpt.get("dico_counts")
    if not isinstance(counts, dict):
        return None
    out = [counts.get(w) for w in words]
    return out if all(isinstance(c, int) for c in out) else None


def _jsonable(p: dict[str, Any]) -> dict[str, Any]:
    """The params that JSON holds as they are (numbers, strings, lists of them)."""
    return {k: v for k, v in p.items() if isinstance(v, (str, int, float, bool, type(None)))
            or (isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v))}


def _add_arguments(p) -> None:
    from xling.commands import args as A

    p.add_argument("--codes", required=True, help="the model's BPE codes (fastBPE's codes file)")
    p.add_argument("--lowercase", choices=("auto", "yes", "no"), default="auto",
                   help="lowercase and strip accents before BPE as XLM's lowercase_and_remove_accent.py "
                        "(auto: when the dictionary has no upper-case word)")
    p.add_argument("--langs", type=A.lang_list, default="",
                   help="xling codes for the model's languages in XLM's id order, e.g. en,fr (default: params' "
                        "id2lang; needed when one is not an ISO 639 code)")


def _run(args) -> int:
    langs = [x for x in args.langs.split(",") if x] or None
    out = convert(args.input, args.codes, args.out, args.lowercase, langs)
    print(f"xling convert xlm: {args.input} -> {out}")
    return 0


register_converter(Converter(
    name="xlm", help="original XLM / MASS checkpoint (mlm_*.pth, mass_*.pth) -> xling encoder / encoder-decoder",
    run=_run, add_arguments=_add_arguments, input_help="mlm_*.pth / mass_*.pth (facebookresearch/XLM, microsoft/MASS)"))
