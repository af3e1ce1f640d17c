"""Configurations of the transformer encoder (XLM-style) and the encoder-decoder (MASS)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from xling.errors import XlingError

ACTIVATIONS = ("gelu", "relu")
POSITIONS = ("learned", "sinusoidal")
DECODER_STARTS = ("bos", "eos")  # sinusoidal: fairseq's table, [sin | cos] halves


@dataclass
class EncoderConfig:
    """Hyper-parameters of :class:`xling.models.encoder.TransformerEncoder`."""

    vocab_size: int  # number of token ids (embedding rows, LM-head outputs)
    n_langs: int  # number of language embeddings (ids 0..n_langs-1)
    d_model: int = 512  # hidden size D
    n_layers: int = 6  # number of transformer layers
    n_heads: int = 8  # attention heads; d_model must be divisible by it
    d_ff: int = 2048  # inner size of the feed-forward sub-layer
    max_positions: int = 512  # learned position embeddings (max sequence length)
    dropout: float = 0.1  # dropout on embeddings and sub-layer outputs
    attn_dropout: float = 0.1  # dropout on attention probabilities
    activation: str = "gelu"  # feed-forward activation: "gelu" or "relu"
    pre_norm: bool = True  # True: LayerNorm before each sub-layer; False: post-norm (original XLM)
    use_lang_embeddings: bool = True  # add a language embedding to every token
    tie_embeddings: bool = True  # LM head weight = token embedding matrix
    pad_id: int = 0  # padding token id (keys equal to it are never attended)
    layer_norm_eps: float = 1e-5  # epsilon of every LayerNorm
    init_std: float = 0.02  # std of the normal initialisation of weights and embeddings
    positions: str = "learned"  # position embeddings: "learned" (a table) or "sinusoidal" (fixed, fairseq's layout)
    position_offset: int = 0  # position of token i is offset + i (fairseq: padding_idx + 1 = 2); table rows = max + offset
    embed_scale: bool = False  # token embeddings multiplied by sqrt(d_model) (fairseq's default; XLM: no)
    emb_norm: bool = True  # LayerNorm over the summed embeddings (XLM, fairseq's layernorm_embedding)
    lm_transform: bool = True  # LM head: dense + gelu + LayerNorm before the projection (BERT/XLM-R); False: plain
    lm_bias: bool = True  # the LM head's projection has a bias (fairseq's output projection has none)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_langs", "d_model", "n_layers", "n_heads", "d_ff", "max_positions"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise XlingError(f"model config {name}: must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise XlingError(
                f"model config d_model: {self.d_model} is not divisible by n_heads={self.n_heads}"
            )
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise XlingError(f"model config {name}: must be in [0, 1), got {value!r}")
        if self.activation not in ACTIVATIONS:
            raise XlingError(
                f"model config activation: {self.activation!r} is not one of {', '.join(ACTIVATIONS)}"
            )
        if not 0 <= self.pad_id < self.vocab_size:
            raise XlingError(f"model config pad_id: {self.pad_id} outside the vocabulary (size {self.vocab_size})")
        if self.layer_norm_eps <= 0 or self.init_std <= 0:
            raise XlingError("model config layer_norm_eps/init_std: must be positive")
        if self.positions not in POSITIONS:
            raise XlingError(f"model config positions: {self.positions!r} is not one of {', '.join(POSITIONS)}")
        if not isinstance(self.position_offset, int) or self.position_offset < 0:
            raise XlingError(f"model config position_offset: must be an integer >= 0, got {self.position_offset!r}")

    @property
    def head_dim(self) -> int:
        """Size of one attention head."""
        return self.d_model // self.n_heads


@dataclass
class Seq2SeqConfig(EncoderConfig):
    """Hyper-parameters of :class:`xling.models.seq2seq.TransformerSeq2Seq`: the encoder's
    (``n_layers`` encoder layers; embeddings and LM head shared with the decoder) plus the
    decoder depth."""

    n_dec_layers: int = 6  # number of decoder layers (self-attention + cross-attention + feed-forward)
    source_bos: bool = True  # sources are <s> x </s> (xling, MASS); False: x </s> (fairseq's translation task)
    decoder_start: str = "bos"  # the first decoder input: "bos" (<s>, xling) or "eos" (</s>, fairseq)
    separate_decoder_embeddings: bool = False  # the decoder has its own token / position tables and embedding norm
    #   (fairseq without --share-all-embeddings); its outputs then go through its own projection
    untied_output: bool = False  # with separate decoder embeddings: the output projection is not the decoder's
    #   token embedding (fairseq without --share-decoder-input-output-embed)
    cross_out_per_lang: bool = False  # the decoder's cross-attention has one output projection per language,
    #   chosen by each row's target language (MASS's encoder_attn.i.out_lin.{lang}); decoding needs the languages

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.separate_decoder_embeddings or self.untied_output) and self.lm_transform:
            raise XlingError("model config separate_decoder_embeddings / untied_output: need lm_transform: false "
                             "(the decoder's output is a plain projection)")
        if self.untied_output and not self.separate_decoder_embeddings:
            raise XlingError("model config untied_output: needs separate_decoder_embeddings")
        if self.decoder_start not in DECODER_STARTS:
            raise XlingError(f"model config decoder_start: {self.decoder_start!r} is not one of "
                             f"{', '.join(DECODER_STARTS)}")
        value = self.n_dec_layers
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise XlingError(f"model config n_dec_layers: must be a positive integer, got {value!r}")
        if not isinstance(self.cross_out_per_lang, bool):
            raise XlingError(f"model config cross_out_per_lang: must be true or false, got {self.cross_out_per_lang!r}")

    def encoder_config(self) -> EncoderConfig:
        """The EncoderConfig of the encoder part (every field but n_dec_layers)."""
        return EncoderConfig(**{f.name: getattr(self, f.name) for f in fields(EncoderConfig)})
