"""Objectives: inputs + targets from token ids, and the loss. Each module below registers its
objective kinds (:mod:`xling.objectives.registry`); a new objective is one module and one line here."""

from xling.objectives import clm, distill, mass, mlm, sentence, seq2seq, unilm, unmt  # noqa: F401  (registration)
