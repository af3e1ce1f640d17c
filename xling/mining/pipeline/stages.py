"""Imports every stage module, which registers its functions in :data:`units.STAGES`."""

from xling.mining.pipeline import embed, extract, prepare, search  # noqa: F401
