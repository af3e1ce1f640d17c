"""Hugging Face checkpoints -> an xling TransformerEncoder with the model's own tokenizer.

    xling convert hf --input HF_DIR --out DIR [--langs en,fr,...]

Reads a ``transformers`` directory (``config.json``, ``model.safetensors`` or its sharded index;
pickled ``*.bin`` files are never read) of one of :data:`FAMILIES`' model types, the bare model or
its masked-LM class (``BertForMaskedLM``, ``XLMRobertaForMaskedLM``, ``XLMWithLMHeadModel``...),
and writes an ordinary xling model directory (``model_type`` transformer_encoder), so it can
initialise classification fine-tuning, XLM-init encoder-decoders, MASS and UNILM (``init:``).

- **BERT family** (``bert``: mBERT, LaBSE) and **RoBERTa family** (``roberta``, ``xlm-roberta``:
  XLM-R): post-norm layers (``pre_norm: false``), embedding LayerNorm, learned positions (RoBERTa's
  start at ``pad_token_id + 1``: ``position_offset``), the LM head's dense + gelu + LayerNorm
  transform (``lm_transform``). The token-type embedding (segment A, what the model adds when
  given no ``token_type_ids``) is folded into the position table; the model has no language
  embeddings, so ``--langs`` (or the model card's ``language:`` list) only names the languages of
  the vocabulary. A directory ``xling convert to-hf`` wrote (config's ``xling_languages``) gets its
  token types back as language embeddings. ``roberta-prelayernorm`` and ``xlm-roberta-xl``
  (pre-norm, the latter without an embedding LayerNorm) are the same with ``pre_norm: true``: what ``xling convert to-hf`` writes
  for xling's own pre-norm encoders, so those come back too.
- **XLM** (``xlm``, transformers' XLMModel: the original XLM weights with language embeddings):
  XLM's layout as :mod:`xling.convert.xlm` reads it from XLM's own files, the languages from
  ``config.json``'s ``id2lang``; the tokenizer (``vocab.json`` + ``merges.txt``, XLMTokenizer)
  becomes a BPE vocabulary with XLM's Moses steps (:class:`xling.tokenization.bpe.BpeVocab`).
- **Tokenizer**: ``tokenizer.json`` (a fast tokenizer) becomes an ``hf`` vocabulary
  (:class:`xling.tokenization.hf.HfVocab`): xling's ids 0..4 are the model's pad, unk, cls/bos,
  sep/eos and mask tokens, the other rows follow in the model's order; embeddings and LM biases
  are permuted alike (a special the tokenizer lacks takes the ``<unk>`` row, output bias -1e4).
- **LM head**: converted when the file has one; a bare model gets a fresh transform (normal,
  std 0.02) and zero biases, tied to the embeddings (``extra.converted.lm_head`` says which).
  Other heads (pooler, NSP, classifiers) are dropped and listed in ``extra.converted.dropped``.

Refused in one line, naming the reason: another model type (the supported ones listed), no
safetensors weights, a decoder (``is_decoder``, cross-attention), relative position embeddings,
an activation xling does not have, a causal XLM, adaptive softmax, weights that do not fit the
configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xling.convert.registry import Converter, register_converter
from xling.errors import XlingError


@dataclass(frozen=True)
class Family:
    """How one Hugging Face model type lays out xling's TransformerEncoder."""

    model_type: str  # config.json's model_type
    prefix: str  # base model prefix of the task classes (``bert``, ``roberta``, ``transformer``)
    pre_norm: bool  # LayerNorm before each sub-layer (and one after the last layer)
    emb_norm: bool  # a LayerNorm over the summed embeddings
    head: str  # the masked-LM head's module name (``cls.predictions``, ``lm_head``, ``pred_layer``)
    norms: tuple[str, str, str]  # layer-relative names of the attention / feed-forward LayerNorms, and the final one
    masked_lm: str  # the transformers class with the LM head (what the export writes)
    pad_positions: bool  # positions start at pad_token_id + 1 (RoBERTa's create_position_ids_from_input_ids)


POST = ("attention.output.LayerNorm", "output.LayerNorm", "")
FAMILIES = {f.model_type: f for f in (
    Family("bert", "bert", False, True, "cls.predictions", POST, "BertForMaskedLM", False),
    Family("roberta", "roberta", False, True, "lm_head", POST, "RobertaForMaskedLM", True),
    Family("xlm-roberta", "roberta", False, True, "lm_head", POST, "XLMRobertaForMaskedLM", True),
    Family("roberta-prelayernorm", "roberta_prelayernorm", True, True, "lm_head",
           ("attention.LayerNorm", "intermediate.LayerNorm", "LayerNorm"), "RobertaPreLayerNormForMaskedLM", True),
    Family("xlm-roberta-xl", "roberta", True, False, "lm_head",
           ("attention.self_attn_layer_norm", "LayerNorm", "encoder.LayerNorm"), "XLMRobertaXLForMaskedLM", True),
    Family("xlm", "transformer", False, True, "pred_layer", ("", "", ""), "XLMWithLMHeadModel", False),
)}
ACTIVATIONS = ("gelu", "relu")  # transformers' names of the activations xling has (exact erf GELU)
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")
WEIGHTS = "model.safetensors"


def head_names(fam: Family) -> dict[str, str]:
    """xling's LM-head parameter -> the Hugging Face name (BERT's ``cls.predictions.*``, RoBERTa's ``lm_head.*``)."""
    h = fam.head
    norm = "transform.LayerNorm" if fam.model_type == "bert" else "layer_norm"
    dense = "transform.dense" if fam.model_type == "bert" else "dense"
    return {"lm_transform": f"{h}.{dense}", "lm_norm": f"{h}.{norm}", "lm_head.weight": f"{h}.decoder.weight",
            "lm_head.bias": f"{h}.bias"}


def layer_names(fam: Family, i: int) -> dict[str, str]:
    """xling's names in layer ``i`` (modules, ``.weight`` / ``.bias`` follow) -> the Hugging Face ones
    (relative to the base model); the fused QKV projection is :func:`qkv_names`."""
    e = f"encoder.layer.{i}"
    return {f"layers.{i}.self_attn.out_proj": f"{e}.attention.output.dense",
            f"layers.{i}.norm_attn": f"{e}.{fam.norms[0]}", f"layers.{i}.ff.fc1": f"{e}.intermediate.dense", f"layers.{i}.ff.fc2": f"{e}.output.dense",
            f"layers.{i}.norm_ff": f"{e}.{fam.norms[1]}"}


def qkv_names(i: int) -> list[str]:
    """The query, key and value projections of layer ``i`` (xling fuses them in this order)."""
    return [f"encoder.layer.{i}.attention.self.{x}" for x in ("query", "key", "value")]


def module_names(fam: Family, n_layers: int) -> dict[str, str]:
    """Every one-to-one module of a BERT-like family: xling name -> Hugging Face base-relative name."""
    out = {"emb_norm": "embeddings.LayerNorm"} if fam.emb_norm else {}
    for i in range(n_layers):
        out.update(layer_names(fam, i))
    if fam.pre_norm:
        out["final_norm"] = fam.norms[2]
    return out


# ------------------------------------------------------------------ reading
def read_config(dir: Path) -> dict[str, Any]:
    """config.json of a Hugging Face directory (a mapping with a supported model_type)."""
    if not dir.is_dir():
        raise XlingError(f"{dir}: no such directory (a Hugging Face model directory)")
    path = dir / "config.json"
    if not path.is_file():
        raise XlingError(f"{path}: no such file (not a Hugging Face model directory)")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise XlingError(f"{path}: not JSON ({e})") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise XlingError(f"{path}: no model_type (not a Hugging Face model config)")
    if cfg.get("format_version") is not None and "config" in cfg:
        raise XlingError(f"{dir}: an xling model directory, not a Hugging Face one")
    if cfg["model_type"] not in FAMILIES:
        raise XlingError(f"{path}: model_type {cfg['model_type']!r} is not supported (supported: "
                         f"{', '.join(FAMILIES)})")
    return cfg


def read_weights(dir: Path) -> dict[str, Any]:
    """Every tensor of ``model.safetensors`` (or of the shards its index names), never a pickle."""
    import safetensors.torch

    index = dir / f"{WEIGHTS}.index.json"
    if (dir / WEIGHTS).is_file():
        files = [dir / WEIGHTS]
    elif index.is_file():
        try:
            files = [dir / f for f in sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise XlingError(f"{index}: not a safetensors index (no weight_map)") from None
    else:
        pickled = " (pickled *.bin weights are not read: re-save with save_pretrained(safe_serialization=True))" \
            if any(dir.glob("*.bin")) else ""
        raise XlingError(f"{dir}: no {WEIGHTS} (model weights missing){pickled}")
    state: dict[str, Any] = {}
    for f in files:
        try:
            state.update(safetensors.torch.load_file(str(f)))
        except Exception as e:  # safetensors' own errors: truncated, not a safetensors file, missing shard
            detail = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            raise XlingError(f"{f}: cannot read the weights ({detail})") from None
    return state


def split_state(state: dict, fam: Family) -> tuple[dict, dict, list[str]]:
    """(base model tensors without the prefix, LM-head tensors, dropped names)."""
    pre = fam.prefix + "."
    if any(k.startswith(pre) for k in state):
        base = {k[len(pre):]: v for k, v in state.items() if k.startswith(pre)}
        rest = {k: v for k, v in state.items() if not k.startswith(pre)}
    else:
        base = {k: v for k, v in state.items() if not k.startswith(fam.head + ".")}
        rest = {k: v for k, v in state.items() if k.startswith(fam.head + ".")}
    head = {k: v for k, v in rest.items() if k.startswith(fam.head + ".")}
    dropped = sorted(k for k in rest if k not in head)
    extra = sorted(k for k in base if k.startswith("pooler.") or k.endswith("position_ids"))
    for k in extra:
        del base[k]
    return base, head, dropped + extra


def _special(cfg_tok: dict, *names: str) -> str | None:
    for name in names:
        value = cfg_tok.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def tokenizer_config(dir: Path) -> dict[str, Any]:
    """tokenizer_config.json and special_tokens_map.json merged (the latter's entries first)."""
    out: dict[str, Any] = {}
    for name in reversed(TOKENIZER_FILES):
        path = dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise XlingError(f"{path}: not JSON ({e})") from None
            if isinstance(data, dict):
                out.update(data)
    return out


def hf_vocab(dir: Path, rows: int, languages: list[str]):
    """The ``hf`` vocabulary of ``dir/tokenizer.json`` (module doc)."""
    from xling.tokenization.hf import HfVocab, _tokenizers

    path = dir / "tokenizer.json"
    if not path.is_file():
        raise XlingError(f"{path}: no such file (xling reads fast tokenizers: re-save the tokenizer with "
                         "AutoTokenizer.from_pretrained(dir).save_pretrained(dir))")
    text = path.read_text(encoding="utf-8")
    try:
        tok = _tokenizers().Tokenizer.from_str(text)
    except Exception as e:
        raise XlingError(f"{path}: not a Hugging Face tokenizer.json ({str(e).splitlines()[0][:120]})") from None
    tc = tokenizer_config(dir)
    names = [_special(tc, "pad_token"), _special(tc, "unk_token"), _special(tc, "cls_token", "bos_token"),
             _special(tc, "sep_token", "eos_token"), _special(tc, "mask_token")]
    specials = [None if n is None else tok.token_to_id(n) for n in names]
    return HfVocab(text, specials, rows, languages, {"converted_from": str(dir.name)}, source=str(path))


# ------------------------------------------------------------------ BERT-like
def _check(cfg: dict, where: str) -> None:
    why = []
    if cfg.get("is_decoder") or cfg.get("add_cross_attention"):
        why.append("a decoder (is_decoder / add_cross_attention)")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        why.append(f"position_embedding_type {cfg['position_embedding_type']!r} (only absolute)")
    if cfg.get("hidden_act", "gelu") not in ACTIVATIONS:
        why.append(f"hidden_act {cfg['hidden_act']!r} (xling has {', '.join(ACTIVATIONS)})")
    if why:
        raise XlingError(f"{where}: not supported: {'; '.join(why)}")


def _pair(src: dict, name: str, where: str) -> tuple:
    try:
        return src[f"{name}.weight"], src[f"{name}.bias"]
    except KeyError as e:
        raise XlingError(f"{where}: the weights lack {e.args[0]} (they do not fit config.json)") from None


def bert_like(cfg: dict, base: dict, head: dict, vocab, fam: Family, where: str):
    """(EncoderConfig, xling state dict, whether the LM head came from the file) of a BERT-like model."""
    import torch

    from xling.models.config import EncoderConfig

    _check(cfg, where)
    n_layers = cfg["num_hidden_layers"]
    word = base["embeddings.word_embeddings.weight"]  # checked by convert
    pos = base.get("embeddings.position_embeddings.weight")
    types = base.get("embeddings.token_type_embeddings.weight")
    if pos is None:
        raise XlingError(f"{where}: the weights lack embeddings.position_embeddings.weight")
    offset = cfg.get("pad_token_id", 1) + 1 if fam.pad_positions else 0
    rows, absent = torch.tensor(vocab.rows), vocab.absent
    # xling's own export (config's xling_languages): the token types are its language embeddings
    langs = types is not None and cfg.get("xling_languages") == vocab.languages and len(types) == len(vocab.languages)
    state = {"tok_emb.weight": word[rows], "pos_emb.weight": pos + (types[0] if types is not None and not langs else 0)}
    if langs:
        state["lang_emb.weight"] = types
    for x, h in module_names(fam, n_layers).items():
        state[f"{x}.weight"], state[f"{x}.bias"] = _pair(base, h, where)
    for i in range(n_layers):
        qkv = [_pair(base, n, where) for n in qkv_names(i)]
        state[f"layers.{i}.self_attn.qkv_proj.weight"] = torch.cat([w for w, _ in qkv])
        state[f"layers.{i}.self_attn.qkv_proj.bias"] = torch.cat([b for _, b in qkv])
    used = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight"} | {f"{h}.{p}" for h in module_names(fam, n_layers).values()
                                                          for p in ("weight", "bias")} | {
        f"{n}.{p}" for i in range(n_layers) for n in qkv_names(i) for p in ("weight", "bias")}
    if unknown := sorted(set(base) - used):
        raise XlingError(f"{where}: the weights hold {unknown[0]}, which config.json does not announce "
                         f"(num_hidden_layers={n_layers}?)")
    names = head_names(fam)
    has_head = bool(head)
    tied = cfg.get("tie_word_embeddings", True) and names["lm_head.weight"] not in head
    if has_head:
        if fam.model_type == "bert" and cfg.get("hidden_act", "gelu") != "gelu":
            raise XlingError(f"{where}: not supported: an LM head whose transform uses {cfg['hidden_act']!r} "
                             "(xling's transform uses gelu)")
        for x in ("lm_transform", "lm_norm"):
            state[f"{x}.weight"], state[f"{x}.bias"] = _pair(head, names[x], where)
        bias = head.get(names["lm_head.bias"], head.get(f"{fam.head}.decoder.bias"))
        if bias is None:
            raise XlingError(f"{where}: the LM head lacks {names['lm_head.bias']}")
        bias = bias[rows].clone()
        bias[absent] = -1e4
        state["lm_head.bias"] = bias
        if not tied:
            state["lm_head.weight"] = head[names["lm_head.weight"]][rows]
    d = cfg["hidden_size"]
    try:
        config = EncoderConfig(
            vocab_size=len(vocab), n_langs=len(vocab.languages), d_model=d, n_layers=n_layers,
            n_heads=cfg["num_attention_heads"], d_ff=cfg["intermediate_size"], max_positions=pos.shape[0] - offset,
            dropout=float(cfg.get("hidden_dropout_prob", 0.1)),
            attn_dropout=float(cfg.get("attention_probs_dropout_prob", 0.1)),
            activation=cfg.get("hidden_act", "gelu"), pre_norm=fam.pre_norm, use_lang_embeddings=langs,
            tie_embeddings=tied, pad_id=0, layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            positions="learned", position_offset=offset, embed_scale=False, emb_norm=fam.emb_norm,
            lm_transform=True, lm_bias=True)
    except (XlingError, KeyError, TypeError) as e:
        raise XlingError(f"{where}: config.json does not make a valid model ({e})") from None
    return config, state, has_head


# ------------------------------------------------------------------ XLM
def xlm_vocab(dir: Path, rows: int, languages: list[str]):
    """XLMTokenizer's vocab.json + merges.txt -> :class:`BpeVocab` with XLM's ids as :mod:`xling.convert.xlm`
    maps them; returns (vocab, rows)."""
    from xling.convert.xlm import LOWERCASE_STEP, STEPS, XLM_SPECIALS, vocab_rows
    from xling.tokenization.bpe import BpeVocab, read_codes

    path = dir / "vocab.json"
    if not path.is_file() or not (dir / "merges.txt").is_file():
        raise XlingError(f"{dir}: no vocab.json + merges.txt (XLMTokenizer's files)")
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
        words = sorted(table, key=table.__getitem__)
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as e:
        raise XlingError(f"{path}: not XLMTokenizer's vocabulary ({e})") from None
    if [table[w] for w in words] != list(range(len(words))) or words[: len(XLM_SPECIALS)] != XLM_SPECIALS:
        raise XlingError(f"{path}: not XLMTokenizer's vocabulary (ids 0..n-1 starting with {XLM_SPECIALS[:4]} ...)")
    if len(words) != rows:
        raise XlingError(f"{path}: {len(words)} tokens but the embeddings have {rows} rows")
    n = len(XLM_SPECIALS)
    words = words[:n] + [w[:-4] if w.endswith("</w>") else w + "@@" for w in words[n:]]  # XLM's own spelling
    tokens, order, control = vocab_rows(words)
    lower = tokenizer_config(dir).get("do_lowercase_and_remove_accent", True)
    meta = {"normalize": STEPS + ([LOWERCASE_STEP] if lower else []), "converted_from": dir.name}
    return BpeVocab(read_codes(dir / "merges.txt"), tokens, languages, meta, control=control, source=str(dir)), order


def xlm_model(cfg: dict, base: dict, head: dict, dir: Path, langs: list[str] | None, where: str):
    """(EncoderConfig, state, head converted?, vocab) of a transformers XLMModel / XLMWithLMHeadModel."""
    import dataclasses

    from xling.convert import xlm

    why = [w for k, w in (("causal", "a causal (CLM) model"), ("asm", "adaptive softmax (asm)"),
                          ("is_decoder", "a decoder")) if cfg.get(k)]
    if why:
        raise XlingError(f"{where}: not supported: {'; '.join(why)}")
    if "embeddings.weight" not in base:
        raise XlingError(f"{where}: the weights lack embeddings.weight (not an XLM model?)")
    n_langs = cfg.get("n_langs", 1)
    p = {**xlm.DEFAULTS, "emb_dim": cfg.get("emb_dim", 2048), "n_layers": cfg.get("n_layers", 12),
         "n_heads": cfg.get("n_heads", 16), "n_langs": n_langs, "n_words": base["embeddings.weight"].shape[0],
         "dropout": cfg.get("dropout", 0.1), "attention_dropout": cfg.get("attention_dropout", 0.1),
         "gelu_activation": cfg.get("gelu_activation", True), "use_lang_emb": cfg.get("use_lang_emb", True),
         "share_inout_emb": cfg.get("tie_word_embeddings", True),
         "id2lang": {int(k): v for k, v in (cfg.get("id2lang") or {}).items()}}
    languages = xlm._languages(p, langs, f"{where} (config.json)")
    vocab, rows = xlm_vocab(dir, p["n_words"], languages)
    enc = {**base, **head}
    config = xlm.model_config(p, enc, None, len(vocab), where)
    config = dataclasses.replace(config, layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)))
    xlm._check_keys(enc, config, config.n_layers, False, "model", where)
    return config, xlm.xling_state(enc, None, rows, config), bool(head), vocab


# ------------------------------------------------------------------ convert
def convert(input: str | Path, out: str | Path, langs: list[str] | None = None) -> Path:
    """Convert the Hugging Face directory ``input`` into the xling model directory ``out`` (module doc)."""
    import torch

    from xling.models.encoder import TransformerEncoder
    from xling.tokenization.langs import check_langs

    dir = Path(input)
    cfg = read_config(dir)
    where = str(dir)
    fam = FAMILIES[cfg["model_type"]]
    base, head, dropped = split_state(read_weights(dir), fam)
    if fam.model_type == "xlm":
        config, state, has_head, vocab = xlm_model(cfg, base, head, dir, langs, where)
    else:
        if langs is None:
            from xling.embeddings.backends.hf import card_languages

            langs = cfg.get("xling_languages") or card_languages(dir)
            if langs is None:
                raise XlingError(f"{dir}: name the languages the model covers with --langs (its model card "
                                 "declares none)")
        word = base.get("embeddings.word_embeddings.weight")
        if word is None:
            raise XlingError(f"{where}: the weights lack embeddings.word_embeddings.weight (not a "
                             f"{fam.model_type} model?)")
        vocab = hf_vocab(dir, word.shape[0], check_langs(langs, "--langs"))
        config, state, has_head = bert_like(cfg, base, head, vocab, fam, where)
    model = TransformerEncoder(config)
    if not has_head:  # a bare model: keep xling's fresh transform, zero output bias
        state.update({k: v for k, v in model.state_dict().items() if k.startswith(("lm_transform", "lm_norm"))})
        state["lm_head.bias"] = torch.zeros(len(vocab))
        state["lm_head.bias"][[i for i in getattr(vocab, "absent", [])]] = -1e4
    if config.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    try:
        missing, unexpected = model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=False)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise XlingError(f"{where}: the weights do not fit config.json: {detail}") from None
    if missing or unexpected:
        raise XlingError(f"{where}: parameters do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    extra = {"converted": {"from": "hf", "model_type": fam.model_type, "source": dir.name,
                           "architectures": cfg.get("architectures"),
                           "lm_head": "converted" if has_head else "initialised",
                           "dropped": dropped}}
    return model.save_pretrained(out, vocab=vocab, extra=extra)


def _add_arguments(p) -> None:
    from xling.commands import args as A

    p.add_argument("--langs", type=A.lang_list, default="",
                   help="xling codes of the languages the model covers, e.g. en,fr (BERT / RoBERTa families: "
                        "default the model card's language list; XLM: config.json's id2lang, in its id order)")


def _run(args) -> int:
    langs = [x for x in args.langs.split(",") if x] or None
    out = convert(args.input, args.out, langs)
    print(f"xling convert hf: {args.input} -> {out}")
    return 0


register_converter(Converter(
    name="hf", help=f"Hugging Face encoder directory ({', '.join(FAMILIES)}) -> xling encoder",
    run=_run, add_arguments=_add_arguments, input_help="a transformers model directory (config.json, "
                                                       "model.safetensors, tokenizer files)"))
