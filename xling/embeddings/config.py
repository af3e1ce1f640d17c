"""Configuration of the sentence embedders (:class:`xling.embeddings.model.SentenceEmbedder`)."""

from __future__ import annotations

from dataclasses import dataclass

from xling.errors import XlingError
from xling.models.config import EncoderConfig

ENCODERS = ("lstm", "transformer")
POOLINGS = ("max", "mean", "cls")


@dataclass
class SentenceEmbedderConfig:
    """Hyper-parameters of a LASER-style sentence embedder: an encoder pooled into one vector
    per sentence, and the LSTM decoder that sees only that vector (plus a target language)."""

    vocab_size: int  # token ids of the joint vocabulary (all languages)
    n_langs: int  # languages of the vocabulary: rows of the decoder's target-language embedding
    encoder: str = "lstm"  # "lstm" (LASER's BiLSTM) | "transformer" (XLM-style, settings in `transformer`)
    pooling: str = "max"  # over real tokens only: "max" (LASER) | "mean" | "cls" (transformer: the <s> state)
    emb_dim: int = 320  # lstm: token embedding size of the encoder (LASER: 320)
    hidden: int = 512  # lstm: units per direction; the sentence embedding has 2 * hidden dims (LASER: 512)
    n_layers: int = 5  # lstm: stacked bidirectional layers (LASER: 5)
    transformer: EncoderConfig | None = None  # transformer: the encoder's config (vocab_size/n_langs as above)
    src_lang_embedding: bool = False  # transformer: add the source language embedding (LASER: no language id)
    dec_emb_dim: int = 320  # decoder token embedding size; the output layer is tied to these embeddings
    dec_hidden: int = 2048  # decoder LSTM units (LASER: 2048)
    dec_layers: int = 1  # decoder LSTM layers (LASER: 1)
    lang_dim: int = 32  # target-language embedding fed to the decoder at every step (LASER: 32)
    dropout: float = 0.1  # dropout on token embeddings and LSTM outputs (encoder and decoder)
    pad_id: int = 0  # padding id: never pooled, never attended, never a target
    source_bos: bool = True  # the encoder reads <s> x </s>; False: x </s> (LASER2, LASER3 without prepend_bos):
    #   callers still give <s> x </s> (one layout everywhere) and embed() drops the <s> column
    final_norm: bool = False  # transformer, post-norm only: a LayerNorm over the encoder's output states
    #   (LASER3 files holding encoder.layer_norm with post-norm layers; pre-norm encoders have their own)
    decoder: bool = True  # False: no bottleneck decoder (converted LASER2 / LASER3 encoders ship none):
    #   the model embeds; decoding, and the translation objective, are errors

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_langs", "emb_dim", "hidden", "n_layers", "dec_emb_dim", "dec_hidden",
                     "dec_layers", "lang_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise XlingError(f"model config {name}: must be a positive integer, got {value!r}")
        if self.encoder not in ENCODERS:
            raise XlingError(f"model config encoder: {self.encoder!r} is not one of {', '.join(ENCODERS)}")
        if self.pooling not in POOLINGS:
            raise XlingError(f"model config pooling: {self.pooling!r} is not one of {', '.join(POOLINGS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise XlingError(f"model config dropout: must be in [0, 1), got {self.dropout!r}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise XlingError(f"model config pad_id: {self.pad_id} outside the vocabulary (size {self.vocab_size})")
        for name in ("src_lang_embedding", "source_bos", "final_norm", "decoder"):
            if not isinstance(getattr(self, name), bool):
                raise XlingError(f"model config {name}: must be true or false, got {getattr(self, name)!r}")
        if self.pooling == "cls" and not self.source_bos:
            raise XlingError("model config pooling: cls pools the <s> state, which source_bos: false removes")
        if self.final_norm and (self.encoder != "transformer" or self.transformer is None
                                or self.transformer.pre_norm):
            raise XlingError("model config final_norm: only for a post-norm transformer encoder "
                             "(a pre-norm one has its final LayerNorm already)")
        if self.encoder == "lstm":
            if self.pooling == "cls":
                raise XlingError("model config pooling: cls needs encoder: transformer (a BiLSTM has no <s> summary)")
            if self.src_lang_embedding:
                raise XlingError("model config src_lang_embedding: the lstm encoder takes no language id")
            if self.transformer is not None:
                raise XlingError("model config transformer: only used with encoder: transformer")
            return
        t = self.transformer
        if t is None:
            raise XlingError("model config transformer: encoder: transformer needs its settings (d_model, n_layers...)")
        if (t.vocab_size, t.n_langs, t.pad_id) != (self.vocab_size, self.n_langs, self.pad_id):
            raise XlingError(f"model config transformer: vocab_size/n_langs/pad_id ({t.vocab_size}, {t.n_langs}, "
                             f"{t.pad_id}) differ from the embedder's "
                             f"({self.vocab_size}, {self.n_langs}, {self.pad_id})")

    @property
    def dim(self) -> int:
        """Size of a sentence embedding."""
        return 2 * self.hidden if self.encoder == "lstm" else self.transformer.d_model
