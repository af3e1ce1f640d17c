"""``xling export onnx``: an xling sentence encoder, or a frozen-embedding classifier on one, as
an ONNX graph that onnxruntime runs without torch or xling.

    from xling.export.onnx import export_onnx
    export_onnx("runs/laser/model", "exported/laser", int8=False)   # -> the exported directory

What is exported (``kind`` in ``onnx_config.json``):

- ``sentence_encoder`` (``model_type: sentence_embedder``, BiLSTM or transformer, any pooling):
  ``tokens`` (B, S) int64 ``<s> x </s>`` right-padded with ``<pad>`` -> ``embeddings`` (B, D)
  float32, raw (not normalised), as ``SentenceEmbedder.embed``; a transformer trained with
  ``src_lang_embedding`` also takes ``lang_ids`` (B,) int64. The decoder is not exported.
- ``frozen_classifier`` (``model_type: embedding_classifier`` whose sentence encoder is an xling
  embedder): the same inputs (and ``tokens_b`` for a pair classifier) -> ``logits`` (B, C):
  embedding, L2 normalisation when the head was trained on unit vectors, the pair features
  ``[u, v, |u - v|, u * v]``, the head.

The directory holds ``model.onnx``, the vocabulary files, ``onnx_config.json`` (inputs,
outputs, special ids, languages, the sha256 of every file) and a README of its inputs and
outputs with a pure-Python example (:mod:`xling.export.readme`). Before the directory is moved
into place, onnxruntime runs two check batches (padded rows of different lengths, then one
row) next to PyTorch: a float32 export that differs by more than 1e-4 is an error; ``--int8``
(onnxruntime's dynamic quantization: int8 weights, activations quantized per batch) records
its difference. xling loads the directory as an encoder backend
(:mod:`xling.embeddings.backends.onnx`).

Exporter: torch's TorchScript-based exporter (``dynamo=False``), not the ``torch.export`` one.
The models branch in Python on their data (an empty row is an error; the attention mask skips
key padding when a batch has none) and pack the BiLSTM's padded rows; ``torch.export`` refuses
such data-dependent branches and packed sequences. The tracer records the path taken by a padded
example batch, which is the general one: a key-padding mask for the transformer (all-true when
a batch has no padding), and for the BiLSTM an ONNX ``LSTM`` with ``sequence_lens``, which like
packing starts the backward direction at each row's last real token and leaves padding out of
every state. The export checks (and the tests) hold that for other batch sizes and lengths.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import xling
from xling.embeddings.backends.onnx import CONFIG_FILE, FORMAT, FORMAT_VERSION, MODEL_FILE, need, session
from xling.errors import XlingError
from xling.utils.io import atomic_dir, sha256_file, write_json_atomic, write_text_atomic

OPSET = 17  # LayerNormalization is one op from 17 on; onnxruntime >= 1.14 runs it
TOLERANCE = 1e-4  # largest |onnxruntime - PyTorch| a float32 export may show on the check batches
EXPORTABLE = ("a sentence embedder (xling train, model_type: sentence) or a frozen-embedding classifier on one "
              "(xling classify train, method: frozen)")
KINDS = {"sentence_embedder": "sentence_encoder", "embedding_classifier": "frozen_classifier"}


class ExportGraph(nn.Module):
    """What ``model.onnx`` computes: ``tokens`` (B, S) [, ``tokens_b`` (B, S')] [, ``lang_ids`` (B,)]
    -> sentence embeddings (B, D), or with a ``head``, logits (B, C)."""

    def __init__(self, embedder: nn.Module, lang_input: bool, head: nn.Module | None = None) -> None:
        super().__init__()
        self.embedder, self.lang_input, self.head = embedder, lang_input, head
        self.pair = bool(head is not None and head.config.pair)
        self.normalize = bool(head is not None and head.config.normalize)

    def _embed(self, tokens: torch.Tensor, lang_ids: torch.Tensor | None) -> torch.Tensor:
        langs = lang_ids[:, None].expand_as(tokens) if lang_ids is not None else None  # (B, S)
        u = self.embedder.embed(tokens, langs)  # (B, D)
        return F.normalize(u, dim=-1) if self.normalize else u

    def forward(self, tokens: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        lang_ids = rest[-1] if self.lang_input else None
        u = self._embed(tokens, lang_ids)  # (B, D)
        if self.head is None:
            return u
        if self.pair:
            v = self._embed(rest[0], lang_ids)  # (B, D)
            u = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)  # (B, 4D): pair_features
        return self.head(u)  # (B, C)


def _load(model_dir: Path) -> tuple[str, Any, nn.Module | None]:
    """(export kind, the xling SentenceEncoder, the classifier head or None); another model kind
    is one line naming it and what can be exported."""
    from xling.embeddings.api import SentenceEncoder
    from xling.models.io import read_model_config

    try:
        model_type = read_model_config(model_dir)["model_type"]
    except XlingError as e:
        raise XlingError(f"{e}; ONNX export takes {EXPORTABLE}") from None
    if model_type not in KINDS:
        raise XlingError(f"{model_dir}: a {model_type} model; ONNX export takes {EXPORTABLE}")
    if model_type == "sentence_embedder":
        return KINDS[model_type], SentenceEncoder.from_pretrained(model_dir), None
    from xling.classification.predict import Predictor

    clf = Predictor.load(model_dir)
    if not isinstance(clf.encoder, SentenceEncoder):
        raise XlingError(f"{model_dir}: a frozen classifier on {clf.encoder.name}, which is not an xling sentence "
                         f"embedder; ONNX export takes {EXPORTABLE}")
    if clf.model.config.dim != clf.encoder.dim:
        raise XlingError(f"{model_dir}: the head takes {clf.model.config.dim}-d embeddings, its encoder gives "
                         f"{clf.encoder.dim}-d")
    return KINDS[model_type], clf.encoder, clf.model.eval()


def _spec(kind: str, enc: Any, head: nn.Module | None, lang_input: bool) -> tuple[list[dict], list[dict]]:
    """The graph's inputs and outputs: name, dtype, shape (symbolic axes by name), meaning."""
    rows = "<s> x </s> piece ids, x cut to max_len pieces, right-padded with pad_id; at least <s> </s> per row"
    inputs = [{"name": "tokens", "dtype": "int64", "shape": ["batch", "seq"], "what": rows}]
    if head is not None and head.config.pair:
        inputs.append({"name": "tokens_b", "dtype": "int64", "shape": ["batch", "seq_b"],
                       "what": "the second sentence of each pair (hypothesis), laid out as tokens"})
    if lang_input:
        inputs.append({"name": "lang_ids", "dtype": "int64", "shape": ["batch"],
                       "what": "language id of each row (lang_ids in onnx_config.json)"})
    if head is None:
        out = {"name": "embeddings", "dtype": "float32", "shape": ["batch", enc.dim],
               "what": "sentence embeddings, not normalised (L2-normalise them for cosine similarity)"}
    else:
        out = {"name": "logits", "dtype": "float32", "shape": ["batch", len(head.config.labels)],
               "what": "class logits, columns in the order of labels (softmax for probabilities)"}
    return inputs, [out]


def _rows(rng: np.random.Generator, lengths: list[int], vocab_size: int) -> torch.Tensor:
    """(B, max length) right-padded rows ``<s> random pieces </s>`` of the given lengths (>= 2)."""
    from xling.tokenization.vocab import BOS, EOS, PAD

    out = torch.full((len(lengths), max(lengths)), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        out[i, 0], out[i, n - 1] = BOS, EOS
        out[i, 1 : n - 1] = torch.from_numpy(rng.integers(5, vocab_size, n - 2))
    return out


def _batch(inputs: list[dict], rng: np.random.Generator, lengths: list[int], enc: Any) -> tuple[torch.Tensor, ...]:
    """Example values of every input: rows of ``lengths`` (tokens_b: the same lengths reversed)."""
    out = []
    for spec in inputs:
        if spec["name"] == "lang_ids":
            out.append(torch.from_numpy(rng.integers(0, len(enc.vocab.languages), len(lengths))))
        else:
            out.append(_rows(rng, lengths if spec["name"] == "tokens" else lengths[::-1], len(enc.vocab)))
    return tuple(out)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's and the quantizer's notices off: Python warnings (the TorchScript exporter's
    deprecation, tracer warnings about the branches described in the module doc), onnxruntime's
    root-logger advice, and torch's C++ shape-inference warnings, which go straight to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _check(graph: ExportGraph, path: Path, inputs: list[dict], enc: Any, max_row: int) -> dict[str, float]:
    """|onnxruntime - PyTorch| (largest) and the smallest row cosine on two check batches: five
    padded rows of different lengths (one of them ``<s> </s>`` alone), then one unpadded row."""
    rng = np.random.default_rng(1)
    sess = session(path, threads=1)
    names = [i["name"] for i in inputs]
    diff, cos = 0.0, 1.0
    for lengths in ([max_row, 2, max(2, max_row // 2), 5, 3], [min(max_row, 9)]):
        values = _batch(inputs, rng, [min(n, max_row) for n in lengths], enc)
        with torch.no_grad():
            ref = graph(*values).numpy()
        got = sess.run(None, {n: v.numpy() for n, v in zip(names, values)})[0]
        diff = max(diff, float(np.abs(got - ref).max()))
        norms = np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1)
        cos = min(cos, float(((got * ref).sum(1) / np.maximum(norms, 1e-30)).min()))
    return {"max_abs_diff": diff, "min_cosine": cos}


def export_onnx(model_dir: str | os.PathLike, out_dir: str | os.PathLike, int8: bool = False) -> dict[str, Any]:
    """Export the model of ``model_dir`` (see the module doc) into ``out_dir`` (replaced as a
    whole, atomically); returns the written ``onnx_config.json`` content."""
    from xling.export.readme import readme

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    kind, enc, head = _load(model_dir)
    need("onnx", "onnxruntime")
    if int8:
        (quantization,) = need("onnxruntime.quantization")
    model = enc.model.eval()
    lang_input = model.config.encoder == "transformer" and model.config.src_lang_embedding
    graph = ExportGraph(model, lang_input, head).eval()
    inputs, outputs = _spec(kind, enc, head, lang_input)
    max_row = enc.max_len + 2  # <s> x </s>, x cut to max_len (which fits the transformer's positions)
    axes = {i["name"]: {k: a for k, a in enumerate(i["shape"]) if isinstance(a, str)} for i in inputs + outputs}
    with atomic_dir(out_dir) as tmp:
        float_path = tmp / ("model.float32.onnx" if int8 else MODEL_FILE)
        example = _batch(inputs, np.random.default_rng(0), [min(6, max_row), 3, 2], enc)  # padded: module doc
        with _quiet(), torch.no_grad():
            torch.onnx.export(graph, example, str(float_path), dynamo=False, opset_version=OPSET,
                              input_names=[i["name"] for i in inputs], output_names=[o["name"] for o in outputs],
                              dynamic_axes=axes, do_constant_folding=True)
            if int8:
                quantization.quantize_dynamic(str(float_path), str(tmp / MODEL_FILE),
                                              weight_type=quantization.QuantType.QInt8)
                float_path.unlink()
        check = _check(graph, tmp / MODEL_FILE, inputs, enc, max_row)
        if not int8 and check["max_abs_diff"] > TOLERANCE:
            raise XlingError(f"{model_dir}: the ONNX graph differs from PyTorch by {check['max_abs_diff']:.2g} "
                             f"(more than {TOLERANCE:g}) on the check batch; please report it")
        enc.vocab.save(tmp)
        cfg = _record(kind, enc, head, model_dir, inputs, outputs, int8, check)
        cfg["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        write_json_atomic(tmp / CONFIG_FILE, cfg)
        write_text_atomic(tmp / "README.md", readme(cfg, out_dir.name))
    return cfg


def _record(kind: str, enc: Any, head: nn.Module | None, model_dir: Path, inputs: list[dict],
            outputs: list[dict], int8: bool, check: dict[str, float]) -> dict[str, Any]:
    """``onnx_config.json`` without the file checksums."""
    import onnxruntime

    c, v = enc.model.config, enc.vocab
    vocab_backend = v.to_json().get("backend", "spm")
    cfg: dict[str, Any] = {
        "format": FORMAT, "version": FORMAT_VERSION, "kind": kind,
        "source": str(model_dir.resolve()), "model": MODEL_FILE,
        "encoder": c.encoder, "pooling": c.pooling, "dim": enc.dim,
        "weights": "int8 (onnxruntime dynamic quantization: int8 weights, uint8 activations per batch)"
                   if int8 else "float32",
        "inputs": inputs, "outputs": outputs,
        "pad_id": v.pad_id, "bos_id": v.bos_id, "eos_id": v.eos_id,
        "max_len": enc.max_len,  # pieces of x kept (rows are at most max_len + 2 tokens)
        "languages": list(enc.languages),  # the codes the encoder was trained on
        "lang_ids": {code: v.lang_id(code) for code in v.languages},  # the vocabulary's language-id table
        "tokenizer": {"backend": vocab_backend, "normalize": list(v.meta.get("normalize") or []),
                      "files": ["spm.model", "vocab.json"] if vocab_backend == "spm" else "see vocab.json"},
        "empty_text": "xling gives an empty or whitespace-only text a zero embedding without running the graph",
        "opset": OPSET,
        "exported_by": {"xling": xling.__version__, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                        "exporter": "torch.onnx TorchScript (dynamo=False)"},
        "check": check,
    }
    if head is not None:
        cfg.update(labels=list(head.config.labels), pair=bool(head.config.pair),
                   normalize=bool(head.config.normalize))
    return cfg
