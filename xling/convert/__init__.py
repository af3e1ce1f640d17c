"""Converters between xling and other toolkits' checkpoints (``xling convert FORMAT``).

Shared pieces: :mod:`xling.convert.pickles` (safe loading of ``.pt`` / ``.pth`` pickles),
:mod:`xling.convert.fairseq_dict` (fairseq ``dict.txt``), :mod:`xling.convert.registry`
(the formats). Each format is one module that registers its converter at import; a new format
is one module and one import line here.
"""

from xling.convert import fairseq, to_fairseq  # noqa: F401  (registration)
from xling.convert import xlm  # noqa: F401  (registration)
from xling.convert import laser  # noqa: F401  (registration)
from xling.convert import hf, to_hf  # noqa: F401  (registration)
