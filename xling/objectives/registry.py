"""The objective registry: every objective kind declared once, in its own module.

A kind is what a training config names in ``objectives: [{type: <name>, langs: [...]}]``. Its
module builds an :class:`ObjectiveKind` and calls :func:`register_objective` at import;
``xling/objectives/__init__.py`` imports the modules (one line per module), so the registry is
complete whenever :func:`objective_kind` is asked. fairseq's ``register_criterion`` is the model::

    register_objective(ObjectiveKind(
        name="mass", langs="lang", model_types=("seq2seq",), section=("mass", MassConfig),
        build=lambda ctx: MASSObjective(len(ctx.vocab), ..., span_ratio=ctx.section("mass").span_ratio),
        read=lambda ctx, lang, corpus, split, cache: (sentences(...), ctx.vocab.lang_id(lang)),
        padded_len=lambda x: len(x) + 2, source_len=True))

Nothing outside this registry lists objective names: the task builder, validation, generation
and the training record ask the kinds' fields (``stream``, ``supervised``, ``decodes``...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xling.errors import XlingError, unknown

LANG_FORMS = ("lang", "pair", "cycle")  # how a kind's langs entries are written: "de", "de-en", "en-de-en"
LANG_PARTS = {"lang": 1, "pair": 2, "cycle": 3}  # codes in an entry of each form


@dataclass
class BuildContext:
    """What a kind's factory and reader see of the run: the vocabulary, the model type being
    trained, the ``data`` section (:class:`xling.data.examples.DataConfig`) and the config's
    other sections by name (``masking``, ``mass``, ``unilm``, ``seq2seq``, ``sentence``...)."""

    vocab: Any  # xling.tokenization.vocab.Vocab
    model_type: str  # encoder | seq2seq | sentence
    data: Any  # DataConfig
    sections: Mapping[str, Any] = field(default_factory=dict)
    model_config: Any = None  # the config of the model being trained (its layout: Seq2SeqConfig.source_bos...)
    generate: Callable[..., list[list[int]]] | None = None  # decoding with the model being trained:
    #   (model, sources, src_id, tgt_id, **GenerationConfig fields) -> token ids per source, in eval mode without
    #   gradient (back-translation); given by the run, since generation is a higher layer than objectives
    shared: dict[str, Any] = field(default_factory=dict)  # objects one run's factories and readers share, by key
    #   (the distillation teacher's vector cache)

    def section(self, name: str) -> Any:
        """The config section ``name`` (a dataclass loaded from YAML)."""
        if name not in self.sections:
            raise XlingError(f"config: no section {name!r} for this objective")
        return self.sections[name]

    def seq2seq_layout(self) -> tuple[bool, str]:
        """The encoder-decoder's layout: (sources start with <s>, the decoder starts from "bos" / "eos");
        xling's ``(True, "bos")`` when the model is not an encoder-decoder."""
        c = self.model_config
        return bool(getattr(c, "source_bos", True)), getattr(c, "decoder_start", "bos")

    def require_xling_layout(self, kind: str) -> None:
        """Refuse an encoder-decoder in fairseq's layout for an objective that builds xling's only."""
        if self.seq2seq_layout() != (True, "bos"):
            raise XlingError(f"objective {kind}: builds xling's layout only (<s> x </s>, decoder from <s>); this "
                             "model has source_bos=false or decoder_start=eos (fairseq's layout), which the "
                             "translation and summarization objectives train")


@dataclass(frozen=True)
class ObjectiveKind:
    name: str  # the config's objective type
    langs: str  # "lang" (de), "pair" (de-en) or "cycle" (en-de-en) entries in the config's langs list
    model_types: tuple[str, ...]  # model types (config model_type) it can train
    build: Callable[[BuildContext], Any]  # the objective object (make_batch / loss), one per run
    read: Callable[..., tuple[list, Any]]  # (ctx, task lang, corpus, split, cache) -> (examples, lang id(s))
    padded_len: Callable[[Any], int]  # tokens one example takes in a batch (token budgets)
    section: tuple[str, type] | None = None  # (YAML section, its dataclass) this kind is configured by
    expand: Callable[[list[str], BuildContext], list[str]] | None = None  # langs -> task langs (e.g. directions)
    finish: Callable[[BuildContext, list], list] | None = None  # the examples a task keeps (after max_examples and
    #   validation limits) made ready for batches, e.g. a teacher's vectors computed for those only
    stream: bool = False  # examples are XLM stream rows (validation keeps data.valid_rows of them)
    supervised: bool = False  # source -> target pairs: generation-validated, an encoder trained on it decodes
    decodes: bool = False  # an encoder trained with it can generate (UNILM), besides supervised kinds
    source_len: bool = False  # its sources were cut at data.max_len (the length a model was trained on)
    lm_probe: bool = False  # an encoder trained with it gets per-language MLM perplexity in validation
    ranking: bool = False  # no LM targets: validation scores it by retrieval, not cross-entropy

    def __post_init__(self) -> None:
        if self.langs not in LANG_FORMS:
            raise ValueError(f"objective {self.name}: langs must be one of {LANG_FORMS}")

    @property
    def generates(self) -> bool:
        """Whether an encoder trained with this kind can decode text."""
        return self.supervised or self.decodes


_KINDS: dict[str, ObjectiveKind] = {}


def register_objective(kind: ObjectiveKind) -> ObjectiveKind:
    """Add ``kind`` to the registry (a name is registered once)."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"objective {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def objective_kinds() -> dict[str, ObjectiveKind]:
    """Every registered kind, by name (importing the modules that register them)."""
    import xling.objectives  # noqa: F401  (its __init__ imports every kind's module)

    return dict(_KINDS)


def objective_kind(name: str, where: str = "objective type") -> ObjectiveKind:
    """The kind called ``name``; an unknown one is an XlingError naming the valid ones."""
    kinds = objective_kinds()
    if name not in kinds:
        raise unknown(where, name, kinds)
    return kinds[name]


def known_kinds(names: list[str]) -> list[ObjectiveKind]:
    """The registered kinds among ``names`` (e.g. a model record's objectives; unknown ones skipped)."""
    kinds = objective_kinds()
    return [kinds[n] for n in names if n in kinds]
