"""LASER2 and LASER3 sentence encoders -> an xling sentence-embedder directory.

    xling convert laser --input laser2.pt --spm laser2.spm [--cvocab laser2.cvocab] --langs en,fr --out DIR
    xling convert laser --input laser3-wol_Latn.v1.pt --spm laser3-wol_Latn.v1.spm \\
                        --cvocab laser3-wol_Latn.v1.cvocab --langs wol_Latn --out DIR

``xling embed --model DIR`` and ``xling mine --model DIR`` then run the published encoder as
``laser_encoders`` (the reference, PyPI 0.0.2) does. The format is read from the checkpoint as
``laser_encoders.models.SentenceEncoder`` reads it, without fairseq (a ``weights_only`` pickle,
:mod:`xling.convert.pickles`):

- **LASER2** (``params``, ``model``, ``dictionary``): ``LaserLstmEncoder(**params)``, a stacked
  BiLSTM max-pooled over ``x </s>`` (no ``<s>``); its tokens are the checkpoint's ``dictionary``
  (piece -> row; ``laser_encoders`` ignores the ``.cvocab`` for LASER2, so ``--cvocab`` is only
  checked against it). Becomes ``encoder: lstm``, ``source_bos: false``.
- **LASER3** (``cfg``, ``model``): a fairseq ``TransformerEncoder`` built from ``cfg["model"]``
  (missing fields: fairseq's defaults); decoder keys dropped, ``encoder.`` stripped; the
  dictionary is the ``.cvocab`` (fairseq ``dict.txt``) plus ``<mask>`` when the model has a
  final ``layer_norm``; pooled by ``sentemb_criterion`` (``cls``: the ``<s>`` state, anything
  else max, as the reference does); ``<s>`` first only with ``prepend_bos``. Becomes ``encoder:
  transformer`` (sinusoidal [sin|cos] or learned positions with fairseq's offset, sqrt(d)
  scaling, pre- or post-norm; ``final_norm`` for a post-norm model with a final LayerNorm).

Both: the text steps of ``LaserTokenizer`` become the vocabulary's ``normalize`` (``nonprint``,
``laser_punct``, ``lowercase``: :mod:`xling.tokenization.laser`), the SentencePiece model is
rewritten with xling's special ids (:mod:`xling.convert.spm_vocab`) and the embedding rows are
reordered to match; pieces missing from the dictionary take its ``<unk>`` row, as
``dictionary.get(piece, unk)`` does. No decoder is kept (``decoder: false``).

Lost: an empty or whitespace-only text is a zero vector in xling (LASER embeds a lone ``</s>``); inputs
longer than a transformer's positions are cut (LASER2 is not cut below ``LSTM_MAX_LEN``);
dictionary entries that are not SentencePiece pieces are reachable in LASER only when a run of
unknown characters spells one, and xling reads every unknown run as ``<unk>`` (the conversion
counts them). Refused, naming the reason: a unidirectional LSTM, a padding index other than 1,
unknown ``params``, two tokens sharing a row, a dictionary that does not fit the embedding,
``no_token_positional_embeddings``, ``encoder_layers_to_keep``, activations other than relu/gelu.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from xling.convert.registry import Converter, register_converter
from xling.errors import XlingError

NORMALIZE = ["nonprint", "laser_punct", "lowercase"]  # LaserTokenizer, before SentencePiece
SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}  # forced by laser_encoders' SentenceEncoder
LSTM_PARAMS = dict(embed_dim=320, hidden_size=512, num_layers=1, bidirectional=False, left_pad=True,
                   padding_value=0.0)  # LaserLstmEncoder's defaults; num_embeddings, padding_idx required
LSTM_MAX_LEN = 100_000  # tokens kept per sentence by a converted LASER2 (laser_encoders cuts none)
ALLOW = ("namespace",)  # LASER2 needs no global; LASER3's cfg["model"] is an argparse.Namespace


def _laser2_tokens(ckpt: dict, rows: int, where: str) -> list[str]:
    """The checkpoint's dictionary as a token list (index = row), specials forced to 0-3."""
    d = ckpt.get("dictionary")
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in d.items()):
        raise XlingError(f"{where}: 'dictionary' is not a mapping of tokens to ids (not a LASER2 checkpoint?)")
    tokens: list[str | None] = [None] * rows
    for tok, i in {**d, **SPECIALS}.items():
        if not 0 <= i < rows:
            raise XlingError(f"{where}: dictionary id {i} ({tok!r}) outside the embedding's {rows} rows: "
                             "the dictionary does not fit the model")
        if tokens[i] is not None:
            raise XlingError(f"{where}: dictionary tokens {tokens[i]!r} and {tok!r} share id {i}")
        tokens[i] = tok
    return [t if t is not None else f"<laser row {i}>" for i, t in enumerate(tokens)]  # unnamed: unreachable


def _check_cvocab(cvocab: str | Path, tokens: list[str]) -> None:
    """LASER2: the .cvocab, when given, must number the tokens as the checkpoint does."""
    from xling.convert.fairseq_dict import NSPECIAL, FairseqDict

    fdict = FairseqDict.load(cvocab)
    index = {t: i for i, t in enumerate(tokens)}
    for tok in fdict.symbols[NSPECIAL:]:
        if index.get(tok) != fdict.index(tok):
            raise XlingError(f"{cvocab}: token {tok!r} is number {fdict.index(tok)} here but "
                             f"{index.get(tok)} in the checkpoint's dictionary: not this model's vocabulary "
                             "(LASER2 checkpoints carry their dictionary; --cvocab may be left out)")


def _laser2(ckpt: dict, cvocab: str | Path | None, where: str) -> tuple[dict, list[str], dict, dict]:
    """(embedder settings, tokens by row, state under xling's names with LASER's rows, record)."""
    params = ckpt["params"]
    if not isinstance(params, dict):
        raise XlingError(f"{where}: 'params' is a {type(params).__name__}, not LaserLstmEncoder's arguments")
    unknown = sorted(set(params) - set(LSTM_PARAMS) - {"num_embeddings", "padding_idx"})
    if unknown:
        raise XlingError(f"{where}: params {unknown[0]!r} is not an argument of LASER's LaserLstmEncoder "
                         f"(known: num_embeddings, padding_idx, {', '.join(LSTM_PARAMS)})")
    p = {**LSTM_PARAMS, **params}
    for name in ("num_embeddings", "padding_idx", "embed_dim", "hidden_size", "num_layers"):
        if not isinstance(p.get(name), int) or isinstance(p.get(name), bool) or p[name] < (name != "padding_idx"):
            raise XlingError(f"{where}: params {name}={p.get(name)!r}: missing or not a "
                             + ("non-negative" if name == "padding_idx" else "positive") + " integer")
    if p["bidirectional"] is not True:
        raise XlingError(f"{where}: params bidirectional={p['bidirectional']!r}: xling's LASER encoder is a "
                         "BiLSTM (every published LASER model is bidirectional)")
    if p["padding_idx"] != SPECIALS["<pad>"]:
        raise XlingError(f"{where}: params padding_idx={p['padding_idx']}: laser_encoders pads with <pad>=1, "
                         "so only 1 masks the padding it adds")
    state = ckpt["model"]
    emb = state.get("embed_tokens.weight")
    if emb is None or tuple(emb.shape) != (p["num_embeddings"], p["embed_dim"]):
        raise XlingError(f"{where}: embed_tokens.weight is {None if emb is None else tuple(emb.shape)}, "
                         f"params say ({p['num_embeddings']}, {p['embed_dim']})")
    tokens = _laser2_tokens(ckpt, p["num_embeddings"], where)
    if cvocab is not None:
        _check_cvocab(cvocab, tokens)
    out = {"encoder.tok_emb.weight" if k == "embed_tokens.weight" else f"encoder.{k}": v for k, v in state.items()}
    settings = dict(encoder="lstm", emb_dim=p["embed_dim"], hidden=p["hidden_size"], n_layers=p["num_layers"],
                    dropout=0.0, source_bos=False)
    return settings, tokens, out, {"from": "laser2", "params": _plain(p)}


def _laser3_state(model: dict) -> dict:
    """laser_encoders' view of the state (with a decoder: decoder keys dropped, ``encoder.``
    stripped; without: as stored), with ``encoder.`` on every key: the names that
    :mod:`xling.convert.fairseq` maps."""
    if "decoder.version" in model:
        keep = ("encoder.layer_norm", "encoder.layers", "encoder.embed", "encoder.version")
        model = {k.replace("encoder.", ""): v for k, v in model.items() if k.startswith(keep)}
    return {f"encoder.{k}": v for k, v in model.items()}


def _laser3(ckpt: dict, cvocab: str | Path | None, where: str) -> tuple[dict, list[str], dict, dict]:
    """(embedder settings, tokens by row, state under xling's names with LASER's rows, record)."""
    from xling.convert.fairseq import BASE, _jsonable, xling_config
    from xling.convert.fairseq_dict import FairseqDict

    cfg = ckpt["cfg"].get("model") if isinstance(ckpt["cfg"], dict) else None
    if cfg is None or not (isinstance(cfg, dict) or hasattr(cfg, "__dict__")):
        raise XlingError(f"{where}: no cfg['model'] with the encoder's settings (not a LASER3 checkpoint?)")
    a = {**BASE, **{k: v for k, v in (dict(cfg) if isinstance(cfg, dict) else vars(cfg)).items() if v is not None}}
    for flag in ("no_token_positional_embeddings", "encoder_layers_to_keep"):
        if a.get(flag):
            raise XlingError(f"{where}: {flag.replace('_', '-')} cannot be expressed as an xling transformer encoder")
    state = _laser3_state(ckpt["model"])
    if "encoder.embed_tokens.weight" not in state:
        raise XlingError(f"{where}: no embed_tokens.weight (not a LASER3 / fairseq encoder checkpoint?)")
    if cvocab is None:
        raise XlingError(f"{where}: a LASER3 checkpoint needs --cvocab (its own .cvocab, or laser2.cvocab)")
    fdict = FairseqDict.load(cvocab)
    final = "encoder.layer_norm.weight" in state
    if final:
        fdict.add_symbol("<mask>")  # laser_encoders: a model with a final layer_norm has <mask> last
    rows = state["encoder.embed_tokens.weight"].shape[0]
    if rows != len(fdict):
        raise XlingError(f"{cvocab}: {len(fdict)} symbols (with the 4 specials{' and <mask>' if final else ''}) but "
                         f"the checkpoint's embedding has {rows} rows: not this model's dictionary")
    pre = bool(a["encoder_normalize_before"])
    if pre and not final:
        raise XlingError(f"{where}: a pre-norm encoder without its final layer_norm (the reference cannot load it)")
    a.update(decoder_layers=1, max_target_positions=a["max_source_positions"])  # the encoder part only
    enc = dataclasses.replace(xling_config(a, 1, 1, SPECIALS["<pad>"], separate=False).encoder_config(),
                              lm_bias=False)
    cls, bos = a.get("sentemb_criterion") == "cls", bool(a.get("prepend_bos", False))
    if cls and not bos:
        raise XlingError(f"{where}: sentemb_criterion cls without prepend_bos: there is no <s> to pool")
    final_name = ("encoder.final_norm" if pre else "out_norm") if final else None
    settings = dict(encoder="transformer", transformer=enc, pooling="cls" if cls else "max", dropout=0.0,
                    source_bos=bos, final_norm=final and not pre)
    return settings, list(fdict.symbols), _laser3_weights(state, enc, final_name, where), \
        {"from": "laser3", "args": _jsonable(a)}


def _laser3_weights(state: dict, c, final: str | None, where: str) -> dict:
    """fairseq encoder names -> TransformerEncoder's (token rows still in LASER's order); a
    missing or left-over key is an error, as laser_encoders' strict load_state_dict makes it."""
    from xling.convert.fairseq import _attn, _norm

    used = {"encoder.version", "encoder.embed_positions._float_tensor"}
    view = _Tracking(state, used)
    try:
        out = {"encoder.tok_emb.weight": view["encoder.embed_tokens.weight"]}
        if c.positions == "learned":
            out["encoder.pos_emb.weight"] = view["encoder.embed_positions.weight"]
        if c.emb_norm:
            out.update(_norm(view, "encoder.layernorm_embedding", "encoder.emb_norm"))
        for i in range(c.n_layers):
            s = f"encoder.layers.{i}"
            out.update(_attn(view, f"{s}.self_attn", f"{s}.self_attn", cross=False))
            out.update(_norm(view, f"{s}.self_attn_layer_norm", f"{s}.norm_attn"))
            for fc in ("fc1", "fc2"):
                out[f"{s}.ff.{fc}.weight"], out[f"{s}.ff.{fc}.bias"] = view[f"{s}.{fc}.weight"], view[f"{s}.{fc}.bias"]
            out.update(_norm(view, f"{s}.final_layer_norm", f"{s}.norm_ff"))
        if final:
            out.update(_norm(view, "encoder.layer_norm", final))
    except KeyError as e:
        raise XlingError(f"{where}: no {e.args[0].removeprefix('encoder.')} (the settings in cfg['model'] "
                         "do not match the weights)") from None
    extra = sorted(set(state) - used)
    if extra:
        raise XlingError(f"{where}: unexpected {extra[0].removeprefix('encoder.')} (the settings in cfg['model'] "
                         "do not match the weights)")
    return out


class _Tracking(dict):
    """A read-only view of a state dict that records the keys read."""

    def __init__(self, state: dict, used: set[str]) -> None:
        super().__init__(state)
        self.used = used

    def __getitem__(self, key: str):
        self.used.add(key)
        return super().__getitem__(key)


def _plain(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None)))}


def _not_pieces(spm_bytes: bytes, tokens: list[str]) -> int:
    """Dictionary tokens that no SentencePiece segmentation produces (specials and madeupword
    padding aside)."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_proto=spm_bytes)
    pieces = {sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not (sp.is_control(i) or sp.is_unknown(i))}
    return sum(t not in pieces and t not in SPECIALS and t != "<mask>" and not t.startswith(("madeupword", "<laser row"))
               for t in tokens)


def convert(checkpoint: str | Path, spm: str | Path, out: str | Path, langs: list[str],
            cvocab: str | Path | None = None) -> tuple[Path, dict]:
    """Convert and save; returns (the model directory, the conversion record)."""
    import torch

    from xling.convert.pickles import load_checkpoint_pickle
    from xling.convert.spm_vocab import rebuild
    from xling.embeddings.api import SentenceEncoder
    from xling.embeddings.config import SentenceEmbedderConfig
    from xling.embeddings.model import SentenceEmbedder
    from xling.tokenization.vocab import Vocab

    where = str(checkpoint)
    for path, what in ((spm, "SentencePiece model (.spm)"), (cvocab, "dictionary (.cvocab)")):
        if path is not None and not Path(path).is_file():
            raise XlingError(f"{path}: no such {what}")
    ckpt = load_checkpoint_pickle(checkpoint, allow=ALLOW)
    if not isinstance(ckpt.get("model"), dict) or not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise XlingError(f"{where}: no 'model' state dict of tensors (not a LASER checkpoint?)")
    if "params" in ckpt:
        settings, tokens, state, record = _laser2(ckpt, cvocab, where)
    elif "cfg" in ckpt:
        settings, tokens, state, record = _laser3(ckpt, cvocab, where)
    else:
        raise XlingError(f"{where}: neither LASER2 ('params', 'model', 'dictionary') nor LASER3 ('cfg', 'model')")
    spm_bytes = Path(spm).read_bytes()
    index = {tok: i for i, tok in enumerate(tokens)}  # a repeated token: its last row, as fairseq's index
    specials = {**SPECIALS, **({"<mask>": index["<mask>"]} if "<mask>" in index else {})}
    mapping = rebuild(spm_bytes, tokens, specials, langs, where=str(spm))
    vocab = Vocab(mapping.vocab._proto, langs, {**mapping.vocab.meta, "normalize": NORMALIZE}, source=str(spm))
    record.update(checkpoint=Path(checkpoint).name, symbols=tokens, not_spm_pieces=_not_pieces(spm_bytes, tokens))
    t = settings.pop("transformer", None)
    t = dataclasses.replace(t, vocab_size=len(vocab), n_langs=len(langs)) if t is not None else None
    cfg = SentenceEmbedderConfig(vocab_size=len(vocab), n_langs=len(langs), transformer=t, decoder=False, **settings)
    state["encoder.tok_emb.weight"] = state["encoder.tok_emb.weight"][torch.tensor(mapping.rows)]
    model = SentenceEmbedder(cfg)
    try:
        missing, unexpected = model.load_state_dict({k: v.float().contiguous() for k, v in state.items()}, strict=False)
    except RuntimeError as e:  # a shape that does not fit the settings
        raise XlingError(f"{where}: parameters do not fit the settings: {str(e).splitlines()[-1].strip()}") from None
    missing = set(missing) - {"encoder.lm_head.weight"}  # tied to the token embedding
    if missing or unexpected:
        raise XlingError(f"{where}: parameters do not fit: missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    enc = SentenceEncoder(model, vocab, langs, max_len=LSTM_MAX_LEN)  # a transformer: cut to its positions
    return enc.save_pretrained(out, extra={"converted": record}), record


def _add_arguments(p) -> None:
    from xling.commands import args as A

    p.add_argument("--spm", required=True, help="the encoder's SentencePiece model (laser2.spm, laser3-xxx.v1.spm)")
    p.add_argument("--cvocab", help="its dictionary: LASER3 needs it (its own .cvocab, or laser2.cvocab); "
                   "LASER2 carries its own and only checks this one against it")
    p.add_argument("--langs", required=True, type=A.lang_list,
                   help="language codes to record, e.g. en,fr (xling embed / mine --lang names one; "
                        "the encoder itself takes no language id)")


def _run(args) -> int:
    langs = [x for x in args.langs.split(",") if x]
    if not langs:
        raise XlingError("--langs: no language codes")
    out, record = convert(args.input, args.spm, args.out, langs, args.cvocab)
    print(f"xling convert laser: {args.input} ({record['from'].upper()}) -> {out}")
    if record["not_spm_pieces"]:
        print(f"xling convert laser: note: {record['not_spm_pieces']} dictionary tokens are not SentencePiece pieces; "
              "LASER gives such a token its row only when a run of unknown characters spells it, xling reads "
              "every unknown run as <unk>")
    return 0


register_converter(Converter(
    name="laser", help="LASER2 (BiLSTM) or LASER3 (transformer) encoder -> xling sentence embedder",
    run=_run, add_arguments=_add_arguments, input_help="laser2.pt or laser3-xxx.v1.pt (the format is detected)"))
