"""An xling encoder -> a Hugging Face directory that ``transformers.AutoModel`` (and
``AutoModelForMaskedLM``, ``AutoTokenizer``) loads.

    xling convert to-hf --input MODEL_DIR --out HF_DIR

The architecture is the one of :data:`xling.convert.hf.FAMILIES` that computes what the xling
encoder computes (refused, naming the setting, when none does):

=====================  ==================  ==============================  =========================
xling (pre_norm ...)   LM head             Hugging Face model_type          language ids go in
=====================  ==================  ==============================  =========================
post-norm              plain (no transform) ``xlm`` (XLMWithLMHeadModel)     ``langs``
post-norm              dense+gelu+LN       ``bert`` (BertForMaskedLM)       ``token_type_ids``
pre-norm, emb_norm     dense+gelu+LN       ``roberta-prelayernorm``         ``token_type_ids``
pre-norm, no emb_norm  dense+gelu+LN       ``xlm-roberta-xl``               ``token_type_ids``
=====================  ==================  ==============================  =========================

xling's defaults (pre-norm, embedding LayerNorm, transform head) are ``roberta-prelayernorm``. The
language embeddings become XLM's language table (one language: folded into the position table)
or the token-type table (``type_vocab_size`` = the number of languages): pass the language id of
every token as ``langs`` / ``token_type_ids``; without them transformers adds the first
language's (token type 0's) vector, which xling does not. Positions move to the target's layout
(RoBERTa's start at ``pad_token_id + 1``); sinusoidal tables are written as learned ones (the
same numbers). Refused: ``embed_scale`` (no Hugging Face encoder here scales embeddings), a
pre-norm encoder with a plain LM head, a post-norm one without an embedding LayerNorm, XLM's
feed-forward size (``d_ff`` must be 4 * ``d_model`` for a plain head), an LM transform with
``relu`` layers under BERT (its transform uses the layers' activation); other model kinds
(seq2seq, sentence embedders, classifiers) are not encoders transformers' classes can hold.

Token ids. A native xling vocabulary (SentencePiece, unigram) is written as a ``tokenizer.json``
(``AutoTokenizer`` gives ``<s> x </s>`` with xling's ids) and the weights keep xling's order. A
model imported from Hugging Face (``hf`` vocabulary) goes back in its original ids with its own
``tokenizer.json``, and a converted XLM (``bpe`` vocabulary) with XLMTokenizer's ``vocab.json`` +
``merges.txt``: the weights are permuted back, so xling's ids are those ids through the
vocabulary's mapping (``rows``); xling's input-only copies (an XLM model's ``<s>``, specials the
original tokenizer lacked) are dropped. Any other vocabulary is exported without a tokenizer, and
the README says so. The directory's README.md says which inputs to give.
"""

from __future__ import annotations

import json
from pathlib import Path

from xling.convert.hf import FAMILIES, Family, head_names, module_names, qkv_names
from xling.convert.registry import Converter, register_converter
from xling.errors import XlingError

XLM_NAMES = {"out_proj": "attentions.{}.out_lin", "norm_attn": "layer_norm1.{}", "ff.fc1": "ffns.{}.lin1",
             "ff.fc2": "ffns.{}.lin2", "norm_ff": "layer_norm2.{}"}  # xling layer module -> transformers XLMModel


def target(cfg, where: str) -> Family:
    """The Hugging Face family computing what encoder config ``cfg`` computes (module doc)."""
    why = []
    if cfg.embed_scale:
        why.append("embed_scale (no Hugging Face encoder here scales token embeddings)")
    if cfg.pre_norm and not cfg.lm_transform:
        why.append("lm_transform: false with pre_norm (RoBERTa-PreLayerNorm / XLM-R XL heads have a transform)")
    if not cfg.pre_norm and not cfg.emb_norm:
        why.append("emb_norm: false with post-norm layers (BERT and XLM normalise the embeddings)")
    if not cfg.pre_norm and not cfg.lm_transform and cfg.d_ff != 4 * cfg.d_model:
        why.append(f"d_ff {cfg.d_ff} != 4 * d_model (XLM's feed-forward size)")
    if not cfg.pre_norm and cfg.lm_transform and cfg.activation != "gelu":
        why.append(f"activation {cfg.activation} with an LM transform (BERT's transform uses the layers' activation)")
    if why:
        raise XlingError(f"{where}: no Hugging Face encoder computes this model: {'; '.join(why)}")
    if not cfg.pre_norm:
        return FAMILIES["bert" if cfg.lm_transform else "xlm"]
    return FAMILIES["roberta-prelayernorm" if cfg.emb_norm else "xlm-roberta-xl"]


# ------------------------------------------------------------------ ids
def original_ids(vocab) -> tuple[list[int], str]:
    """(``order``: the xling id of every exported row, in the exported order; the tokenizer kind:
    ``spm``, ``hf``, ``xlm`` or ``none``)."""
    from xling.tokenization.bpe import BpeVocab
    from xling.tokenization.hf import HfVocab

    if isinstance(vocab, HfVocab):
        return _inverse(vocab.rows, set(vocab.absent)), "hf"
    if isinstance(vocab, BpeVocab):
        words = xlm_words(vocab)
        if words is not None:
            from xling.convert.xlm import vocab_rows

            return _inverse(vocab_rows(words)[1], {vocab.bos_id}), "xlm"
        return list(range(len(vocab))), "none"
    proto = _spm_proto(vocab)
    ok = (proto.trainer_spec.model_type == proto.trainer_spec.UNIGRAM and proto.normalizer_spec.name == "identity"
          and not proto.normalizer_spec.remove_extra_whitespaces)
    return list(range(len(vocab))), "spm" if ok else "none"


def _inverse(rows: list[int], skip: set[int]) -> list[int]:
    """The xling id of each original row: the first id mapped to it that is not in ``skip``."""
    out: dict[int, int] = {}
    for i, r in enumerate(rows):
        if i not in skip:
            out.setdefault(r, i)
    for i, r in enumerate(rows):
        out.setdefault(r, i)
    return [out[r] for r in range(len(out))]


def xlm_words(vocab) -> list[str] | None:
    """XLM's dictionary (``<s> </s> <pad> <unk> <special0..9>`` + words) behind a converted XLM
    vocabulary (:func:`xling.convert.xlm.vocab_rows`'s layout), or None for another BPE vocabulary."""
    from xling.convert.xlm import MASK_WORD, XLM_BOS_NAME, XLM_SPECIALS

    tokens = [vocab.id_to_piece(i) for i in range(len(vocab))]
    head = [XLM_BOS_NAME] + [w for w in XLM_SPECIALS[4:] if w != MASK_WORD]
    if tokens[5: 5 + len(head)] != head or vocab.control != 5 + len(head):
        return None
    return XLM_SPECIALS + tokens[5 + len(head):]


def _spm_proto(vocab):
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(vocab._proto)
    return proto


# ------------------------------------------------------------------ weights
def _positions(model, first: int, size: int, extra=None):
    """The exported position table: row ``first + i`` = xling's position ``i`` (+ ``extra``), other rows 0."""
    import torch

    c = model.config
    table = model.pos_emb.weight if model.pos_emb is not None else model.pos_table
    out = torch.zeros(size, c.d_model)
    out[first: first + c.max_positions] = table[c.position_offset: c.position_offset + c.max_positions]
    return out + extra if extra is not None else out


def hf_state(model, fam: Family, order: list[int], pad: int) -> dict:
    """xling's state -> the Hugging Face masked-LM class's (``order``: xling id of each exported row)."""
    import torch

    c = model.config
    s = {k: v.detach() for k, v in model.state_dict().items()}
    idx = torch.tensor(order)
    bias = s["lm_head.bias"][idx] if c.lm_bias else torch.zeros(len(order))
    out = {}
    if fam.model_type == "xlm":
        p = "transformer."
        lang = c.use_lang_embeddings and c.n_langs > 1
        fold = s["lang_emb.weight"][0] if c.use_lang_embeddings and not lang else None
        out[p + "position_embeddings.weight"] = _positions(model, 0, c.max_positions, fold)
        out[p + "embeddings.weight"] = s["tok_emb.weight"][idx]
        if lang:
            out[p + "lang_embeddings.weight"] = s["lang_emb.weight"]
        out[p + "layer_norm_emb.weight"], out[p + "layer_norm_emb.bias"] = s["emb_norm.weight"], s["emb_norm.bias"]
        for i in range(c.n_layers):
            for x, w in zip("qkv", s[f"layers.{i}.self_attn.qkv_proj.weight"].chunk(3)):
                out[f"{p}attentions.{i}.{x}_lin.weight"] = w
            for x, b in zip("qkv", s[f"layers.{i}.self_attn.qkv_proj.bias"].chunk(3)):
                out[f"{p}attentions.{i}.{x}_lin.bias"] = b
            for x, h in XLM_NAMES.items():
                src = f"layers.{i}.self_attn.{x}" if x == "out_proj" else f"layers.{i}.{x}"
                for t in ("weight", "bias"):
                    out[f"{p}{h.format(i)}.{t}"] = s[f"{src}.{t}"]
        out["pred_layer.proj.weight"] = s["lm_head.weight"][idx]
        out["pred_layer.proj.bias"] = bias
        return out
    p = fam.prefix + "."
    first = pad + 1 if fam.pad_positions else 0
    out[p + "embeddings.position_embeddings.weight"] = _positions(model, first, first + c.max_positions)
    out[p + "embeddings.word_embeddings.weight"] = s["tok_emb.weight"][idx]
    out[p + "embeddings.token_type_embeddings.weight"] = (s["lang_emb.weight"] if c.use_lang_embeddings
                                                         else torch.zeros(1, c.d_model))
    for x, h in module_names(fam, c.n_layers).items():
        for t in ("weight", "bias"):
            out[f"{p}{h}.{t}"] = s[f"{x}.{t}"]
    for i in range(c.n_layers):
        for name, w, b in zip(qkv_names(i), s[f"layers.{i}.self_attn.qkv_proj.weight"].chunk(3),
                              s[f"layers.{i}.self_attn.qkv_proj.bias"].chunk(3)):
            out[f"{p}{name}.weight"], out[f"{p}{name}.bias"] = w, b
    names = head_names(fam)
    for x in ("lm_transform", "lm_norm"):
        for t in ("weight", "bias"):
            out[f"{names[x]}.{t}"] = s[f"{x}.{t}"]
    out[names["lm_head.weight"]] = s["lm_head.weight"][idx]
    out[names["lm_head.bias"]] = out[f"{fam.head}.decoder.bias"] = bias  # tied to each other only with tied weights
    return out


def hf_config(model, fam: Family, n_rows: int, specials: dict[str, int], languages: list[str]):
    """The transformers config of the exported model."""
    import transformers

    c = model.config
    common = dict(vocab_size=n_rows, pad_token_id=specials["pad"], bos_token_id=specials["bos"],
                  eos_token_id=specials["eos"], tie_word_embeddings=c.tie_embeddings,
                  architectures=[fam.masked_lm], layer_norm_eps=c.layer_norm_eps)
    if fam.model_type == "xlm":
        lang = c.use_lang_embeddings and c.n_langs > 1
        return transformers.XLMConfig(
            emb_dim=c.d_model, n_layers=c.n_layers, n_heads=c.n_heads, dropout=c.dropout,
            attention_dropout=c.attn_dropout,
            gelu_activation=c.activation == "gelu", sinusoidal_embeddings=False, causal=False, asm=False,
            n_langs=c.n_langs if lang else 1, use_lang_emb=lang, max_position_embeddings=c.max_positions,
            is_encoder=True, pad_index=specials["pad"], unk_index=specials["unk"], bos_index=specials["bos"],
            eos_index=specials["eos"], mask_index=specials["mask"], mask_token_id=specials["mask"],
            id2lang=dict(enumerate(languages)), lang2id={x: i for i, x in enumerate(languages)}, **common)
    cls = {"bert": transformers.BertConfig, "roberta-prelayernorm": transformers.RobertaPreLayerNormConfig,
           "xlm-roberta-xl": transformers.XLMRobertaXLConfig}[fam.model_type]
    first = specials["pad"] + 1 if fam.pad_positions else 0
    return cls(hidden_size=c.d_model, num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
               intermediate_size=c.d_ff, hidden_act=c.activation, hidden_dropout_prob=c.dropout,
               attention_probs_dropout_prob=c.attn_dropout, max_position_embeddings=first + c.max_positions,
               type_vocab_size=c.n_langs if c.use_lang_embeddings else 1, position_embedding_type="absolute",
               xling_languages=languages, **common)


# ------------------------------------------------------------------ tokenizer
def write_tokenizer(vocab, kind: str, out: Path) -> str:
    """Write the tokenizer files of ``kind`` into ``out``; returns a README sentence about them."""
    from xling.tokenization.vocab import SPECIAL_TOKENS

    if kind == "none":
        return ("No tokenizer is exported: this vocabulary has no Hugging Face tokenizer with the same ids "
                "(only xling's own SentencePiece unigram vocabularies, imported Hugging Face tokenizers and converted "
                "XLM vocabularies are written). Tokenize with xling (`Vocab.load`) and feed its ids.")
    names = dict(zip(("pad_token", "unk_token", "bos_token", "eos_token", "mask_token"), SPECIAL_TOKENS))
    if kind == "xlm":
        from xling.convert.xlm import XLM_SPECIALS

        words = xlm_words(vocab)
        n = len(XLM_SPECIALS)
        table = {w if i < n else (w[:-2] if w.endswith("@@") else w + "</w>"): i for i, w in enumerate(words)}
        (out / "vocab.json").write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
        (out / "merges.txt").write_text(vocab._codes, encoding="utf-8")
        lower = "lowercase_accents" in (vocab.meta.get("normalize") or [])
        langs = vocab.languages
        cfg = {"tokenizer_class": "XLMTokenizer", "do_lowercase_and_remove_accent": lower, "unk_token": "<unk>",
               "bos_token": "<s>", "sep_token": "</s>", "cls_token": "</s>", "pad_token": "<pad>",
               "mask_token": "<special1>", "id2lang": dict(enumerate(langs)),
               "lang2id": {x: i for i, x in enumerate(langs)}}
        (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
        return ("The tokenizer is XLMTokenizer's (vocab.json + merges.txt, Moses preprocessing); its ids index "
                "the weights. XLMTokenizer frames a sentence as `<s> x </s>`; the original XLM (and xling) fed "
                "`</s> x </s>`.")
    if kind == "hf":
        from tokenizers import Tokenizer

        tok = Tokenizer.from_str(vocab.tokenizer_json)
        (out / "tokenizer.json").write_text(vocab.tokenizer_json, encoding="utf-8")
        cfg = {"tokenizer_class": "PreTrainedTokenizerFast"}
        rows = vocab.rows
        for i, (key, _) in enumerate(names.items()):
            if i not in vocab.absent:
                cfg[key] = tok.id_to_token(rows[i])
        cfg["cls_token"], cfg["sep_token"] = cfg.get("bos_token"), cfg.get("eos_token")
        (out / "tokenizer_config.json").write_text(json.dumps({k: v for k, v in cfg.items() if v}, indent=1),
                                                   encoding="utf-8")
        return ("The tokenizer is the model's own (tokenizer.json, as imported); its ids index the weights "
                "(xling's ids map to them through the vocabulary's `rows`).")
    spm_tokenizer(vocab).save(str(out / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", **names, "cls_token": "<s>", "sep_token": "</s>"}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    return ("The tokenizer (tokenizer.json) is xling's SentencePiece vocabulary with xling's ids; AutoTokenizer "
            "frames a sentence as `<s> x </s>`, as xling does.")


def spm_tokenizer(vocab):
    """xling's unigram SentencePiece model (identity normalisation, byte fallback) as a ``tokenizers`` Tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from xling.tokenization.vocab import BOS, EOS, SPECIAL_TOKENS, UNK

    proto = _spm_proto(vocab)
    tok = Tokenizer(models.Unigram([(p.piece, p.score) for p in proto.pieces], unk_id=UNK,
                                   byte_fallback=proto.trainer_spec.byte_fallback))
    prefix = proto.normalizer_spec.add_dummy_prefix  # "▁" before the text, even one starting with a space
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁")] * prefix + [normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
                                    + [decoders.Strip(" ", 1, 0)] * prefix)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIAL_TOKENS[BOS]} $A {SPECIAL_TOKENS[EOS]}",
        pair=f"{SPECIAL_TOKENS[BOS]} $A {SPECIAL_TOKENS[EOS]} $B {SPECIAL_TOKENS[EOS]}",
        special_tokens=[(SPECIAL_TOKENS[BOS], BOS), (SPECIAL_TOKENS[EOS], EOS)])
    return tok


# ------------------------------------------------------------------ export
def export(model_dir: str | Path, out: str | Path) -> Path:
    """Write the Hugging Face directory ``out`` of the xling encoder ``model_dir`` (module doc)."""
    from xling.tokenization.hf import _tokenizers
    from xling.embeddings.backends.hf import _need
    from xling.models.encoder import TransformerEncoder
    from xling.models.io import read_model_config
    from xling.tokenization.vocab import Vocab
    from xling.utils.io import atomic_dir

    transformers = _need("transformers")
    _tokenizers()
    where = str(model_dir)
    kind = read_model_config(model_dir)["model_type"]
    if kind != TransformerEncoder.model_type:
        raise XlingError(f"{where}: a {kind} cannot be exported to Hugging Face (only {TransformerEncoder.model_type}: "
                         "transformers has no class computing it)")
    model = TransformerEncoder.from_pretrained(model_dir).eval()
    fam = target(model.config, where)
    vocab = Vocab.load(model_dir)
    order, tok_kind = original_ids(vocab)
    position = {x: order.index(i) for x, i in zip(("pad", "unk", "bos", "eos", "mask"), range(5)) if i in order}
    specials = {x: position.get(x, position["unk"]) for x in ("pad", "unk", "bos", "eos", "mask")}
    config = hf_config(model, fam, len(order), specials, vocab.languages)
    hf = getattr(transformers, fam.masked_lm)(config)
    state = hf_state(model, fam, order, specials["pad"])
    missing, unexpected = hf.load_state_dict(state, strict=False)
    tied = {"pred_layer.proj.weight", head_names(fam)["lm_head.weight"], f"{fam.head}.decoder.bias"}
    if unexpected or set(missing) - tied:  # a converter bug, not the user's model
        raise XlingError(f"{where}: export does not fit {fam.masked_lm}: missing {sorted(set(missing) - tied)[:3]}, "
                         f"unexpected {unexpected[:3]}")
    out = Path(out)
    with atomic_dir(out) as tmp:
        hf.save_pretrained(str(tmp))
        note = write_tokenizer(vocab, tok_kind, tmp)
        (tmp / "README.md").write_text(readme(Path(model_dir).name, fam, model.config, vocab.languages, note),
                                       encoding="utf-8")
    return out


def readme(name: str, fam: Family, c, languages: list[str], tokenizer_note: str) -> str:
    """The exported directory's README: the architecture, its inputs, the tokenizer."""
    lang_input = "langs" if fam.model_type == "xlm" else "token_type_ids"
    if c.use_lang_embeddings and (fam.model_type != "xlm" or c.n_langs > 1):
        langs = (f"Give the language id of every token as `{lang_input}` (ids: "
                 f"{', '.join(f'{i} {x}' for i, x in enumerate(languages))}); without it transformers adds language "
                 f"0's vector, which xling does not.")
    elif c.use_lang_embeddings:
        langs = f"The model's one language embedding ({languages[0]}) is folded into the position table."
    else:
        langs = f"The model has no language embeddings (languages: {', '.join(languages)})."
    return (f"---\nlanguage: {json.dumps(languages)}\nlibrary_name: transformers\n---\n\n"
            f"# {name}\n\nExported from xling (`xling convert to-hf`): a `{fam.model_type}` model "
            f"(`{fam.masked_lm}`; `AutoModel` gives the hidden states xling computes, `AutoModelForMaskedLM` its MLM "
            "logits). Pad batches on the right and pass `attention_mask`.\n\n"
            f"{langs}\n\n{tokenizer_note}\n\nA pooler, if transformers builds one, is not part of the model "
            "(freshly initialised).\n")


def _run(args) -> int:
    out = export(args.input, args.out)
    print(f"xling convert to-hf: {args.input} -> {out}")
    return 0


register_converter(Converter(
    name="to-hf", help="xling encoder -> Hugging Face directory (AutoModel / AutoModelForMaskedLM / AutoTokenizer)",
    run=_run, input_help="an xling encoder directory (model_type transformer_encoder)",
    out_help="the Hugging Face directory to write (replaced as a whole)"))
