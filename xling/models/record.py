"""The training record: what ``xling train`` writes into a model directory's ``config.json``
(its ``extra``), with one writer (:meth:`TrainingRecord.to_extra`) and one reader
(:meth:`TrainingRecord.from_extra` / :func:`read_record`).

On disk (unchanged since the first models, so every model directory keeps loading)::

    "extra": {"pretrain": {"objectives": [{"type": "mlm", "langs": ["en"], ...}], "stream_len": 256,
                           "max_pair_len": 126, "max_len": 126, "max_tgt_len": 126, "init": null,
                           "seq2seq_corruption": "causal"},      # only for an encoder fine-tuned seq2seq
              "init_extra": {...the init model's extra, without its own init_extra...},
              "sentence": {"languages": [...], "target_languages": [...]}}   # sentence embedders
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DECODINGS = ("mask", "causal")  # how a UNILM encoder generates (xling.generation.unilm)


@dataclass
class SentenceRecord:
    languages: list[str] = field(default_factory=list)  # languages the encoder was trained on
    target_languages: list[str] = field(default_factory=list)  # languages its decoder translates into

    def merged(self, other: SentenceRecord | None) -> SentenceRecord:
        """These languages plus ``other``'s (e.g. the init model's)."""
        if other is None:
            return self
        return SentenceRecord(sorted(set(self.languages) | set(other.languages)),
                              sorted(set(self.target_languages) | set(other.target_languages)))


@dataclass
class TrainingRecord:
    objectives: list[dict[str, Any]] = field(default_factory=list)  # the run's objectives, as configured
    stream_len: int | None = None  # data.stream_len of the run
    max_pair_len: int | None = None  # data.max_pair_len
    max_len: int | None = None  # data.max_len: sources / sentences were cut there
    max_tgt_len: int | None = None  # data.max_tgt_len: targets were cut there
    init: str | None = None  # the model directory the run started from
    seq2seq_corruption: str | None = None  # an encoder fine-tuned seq2seq: its layout (decides how it decodes)
    init_record: TrainingRecord | None = None  # the init model's record (one level: without its own init)
    sentence: SentenceRecord | None = None  # a sentence embedder's languages

    # ------------------------------------------------------------ reading and writing

    @classmethod
    def from_extra(cls, extra: Any) -> TrainingRecord:
        """The record of a config.json ``extra`` (missing or malformed parts read as empty)."""
        extra = extra if isinstance(extra, dict) else {}
        pre = extra.get("pretrain") if isinstance(extra.get("pretrain"), dict) else {}
        objs = [o for o in pre.get("objectives") or [] if isinstance(o, dict) and isinstance(o.get("type"), str)]
        sent = extra.get("sentence") if isinstance(extra.get("sentence"), dict) else None
        init_extra = extra.get("init_extra")

        def num(key: str) -> int | None:
            v = pre.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return cls(
            objectives=objs, stream_len=num("stream_len"), max_pair_len=num("max_pair_len"), max_len=num("max_len"),
            max_tgt_len=num("max_tgt_len"), init=pre.get("init") if isinstance(pre.get("init"), str) else None,
            seq2seq_corruption=pre.get("seq2seq_corruption") if isinstance(pre.get("seq2seq_corruption"), str) else None,
            init_record=cls.from_extra(init_extra) if isinstance(init_extra, dict) else None,
            sentence=SentenceRecord(list(sent.get("languages") or []), list(sent.get("target_languages") or []))
            if sent is not None else None)

    def to_extra(self) -> dict[str, Any]:
        """The ``extra`` dict written into config.json (the format the module doc shows)."""
        out: dict[str, Any] = {}
        run = (self.objectives, self.stream_len, self.max_pair_len, self.max_len, self.max_tgt_len, self.init,
               self.seq2seq_corruption)
        if any(v for v in run):  # something to record (a model saved outside `xling train` may have nothing)
            out["pretrain"] = {"objectives": self.objectives, "stream_len": self.stream_len,
                               "max_pair_len": self.max_pair_len, "max_len": self.max_len,
                               "max_tgt_len": self.max_tgt_len, "init": self.init}
            if self.seq2seq_corruption is not None:
                out["pretrain"]["seq2seq_corruption"] = self.seq2seq_corruption
        if self.init_record is not None:
            out["init_extra"] = {k: v for k, v in self.init_record.to_extra().items() if k != "init_extra"}
        if self.sentence is not None:
            out["sentence"] = {"languages": self.sentence.languages,
                               "target_languages": self.sentence.target_languages}
        return out

    # ------------------------------------------------------------ what readers ask

    def objective_types(self) -> list[str]:
        """Objective types of this run, then of the init model's record."""
        own = [o["type"] for o in self.objectives]
        return own + (self.init_record.objective_types() if self.init_record is not None else [])

    def decoding(self) -> str:
        """How a UNILM encoder generates: ``"causal"`` when its last training was seq2seq
        fine-tuning with ``seq2seq.corruption: causal``, else ``"mask"``."""
        return "causal" if self.seq2seq_corruption == "causal" else "mask"


def read_record(model_dir: str | os.PathLike) -> TrainingRecord:
    """The training record of a model directory (empty for a model ``xling train`` did not write)."""
    from xling.models.io import read_model_config

    return TrainingRecord.from_extra(read_model_config(model_dir).get("extra"))
