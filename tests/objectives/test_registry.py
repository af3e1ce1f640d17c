"""The objective registry: every kind declared once, and a new kind needs nothing but its
registration to be configured, checked, read and built into tasks."""

from __future__ import annotations

import dataclasses

import pytest

from xling.config import load_config
from xling.errors import XlingError
from xling.objectives import registry
from xling.objectives.mlm import MLMObjective
from xling.objectives.readers import read_streams
from xling.objectives.registry import ObjectiveKind, objective_kind, objective_kinds, register_objective
from xling.tasks.build import ObjectiveSpec, build_tasks, check_objectives
from xling.tasks.train import TrainConfig, build_context, check_config
from xling.tokenization.vocab import Vocab

SHIPPED = {"mlm", "tlm", "clm", "mass", "unilm", "translation", "summarization", "laser_translation",
           "translation_ranking", "denoise", "backtranslation", "distill"}


def test_every_shipped_kind_is_registered_once_and_well_formed():
    kinds = objective_kinds()
    assert set(kinds) == SHIPPED
    for name, k in kinds.items():
        assert k.name == name and k.langs in ("lang", "pair", "cycle") and k.model_types
        assert set(k.model_types) <= {"encoder", "seq2seq", "sentence"}
        if k.section is not None:  # its section is a field of the training config, of that dataclass
            section, cls = k.section
            field = {f.name: f for f in dataclasses.fields(TrainConfig)}[section]
            assert dataclasses.is_dataclass(cls) and isinstance(field.default_factory(), cls)
    with pytest.raises(ValueError, match="registered twice"):
        register_objective(dataclasses.replace(kinds["mlm"]))


def test_an_unknown_kind_names_the_registered_ones():
    with pytest.raises(XlingError, match=r"unknown objective type 'mlmm'; did you mean 'mlm'"):
        objective_kind("mlmm")
    with pytest.raises(XlingError, match="objectives\\[0\\]"):
        check_objectives([ObjectiveSpec("nosuch", ["en"])], "encoder")


def test_traits_answer_what_other_packages_asked_by_name():
    k = objective_kinds()
    assert {n for n, x in k.items() if x.stream} == {"mlm", "clm", "unilm"}
    assert {n for n, x in k.items() if x.supervised} == {"translation", "summarization"}
    assert {n for n, x in k.items() if x.generates} == {"translation", "summarization", "unilm", "denoise",
                                                        "backtranslation"}
    assert {n for n, x in k.items() if x.source_len} == {"mass", "translation", "summarization", "denoise",
                                                         "backtranslation"}
    assert {n for n, x in k.items() if x.lm_probe} == {"mlm", "tlm", "clm"}
    assert {n for n, x in k.items() if x.ranking} == {"translation_ranking", "distill"}
    assert {n for n, x in k.items() if x.langs == "pair"} == {"tlm", "translation"}
    assert {n for n, x in k.items() if x.langs == "cycle"} == {"backtranslation"}


def test_a_new_kind_is_one_registration(workspace, monkeypatch):
    """A kind registered from outside (here: MLM on every other stream row, under a new name)
    is accepted by the config checks and built into tasks; nothing else changes."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))  # undone after the test

    def every_other(ctx, lang, corpus, split, cache):
        rows, lang_id = read_streams(ctx, lang, corpus, split, cache)
        return rows[::2], lang_id

    register_objective(ObjectiveKind(
        name="sparse_mlm", langs="lang", model_types=("encoder",), read=every_other, padded_len=len,
        build=lambda ctx: MLMObjective(len(ctx.vocab), ctx.section("masking"), name="sparse_mlm"), stream=True))
    cfg = load_config(TrainConfig, None, [f"data.corpus={workspace.corpus}", f"data.vocab={workspace.vocab}",
                                          "data.stream_len=32", "objectives=[{type: sparse_mlm, langs: [en, fr]}]"])
    check_config(cfg)
    vocab = Vocab.load(workspace.vocab)
    tasks = build_tasks(cfg.objectives, build_context(cfg, vocab))
    full = build_tasks([ObjectiveSpec("mlm", ["en", "fr"])], build_context(cfg, vocab))
    assert [t.name for t in tasks] == ["sparse_mlm-en", "sparse_mlm-fr"]
    assert [len(t.examples) for t in tasks] == [(len(f.examples) + 1) // 2 for f in full]
    assert isinstance(tasks[0].objective, MLMObjective) and tasks[0].objective is tasks[1].objective
    with pytest.raises(XlingError, match="cannot train model_type: seq2seq"):
        check_objectives(cfg.objectives, "seq2seq")


def test_config_sections_check_themselves():
    for override, match in (("masking.p_mask=0.95", "masking"), ("mass.span_ratio=0", "span_ratio"),
                            ("unilm.p_seq2seq=0.9", "sum to 1"), ("seq2seq.corruption=zeros", "corruption"),
                            ("sentence.pivots=[]", "pivots"), ("data.max_tokens=0", "max_tokens")):
        with pytest.raises(XlingError, match=match):
            load_config(TrainConfig, None, [override])
