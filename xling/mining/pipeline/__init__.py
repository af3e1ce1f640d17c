"""Bitext mining at scale: a sharded, resumable pipeline of stages (``xling mine-corpus``).

    from xling.config import load_config
    from xling.mining.pipeline import MineCorpusConfig, mine_corpus, make_executor
    cfg = load_config(MineCorpusConfig, "configs/mine_corpus.yaml")
    summary = mine_corpus(cfg, "runs/mine", executor=make_executor("local", workers=4))

Stages (each a pure function from files to files, one unit per shard, side or direction):
prepare -> dedup -> embed -> train -> add -> merge -> search -> means -> score -> select ->
extract. Modules: :mod:`.config` (the YAML config), :mod:`.units` (units and their ``.done``
records), :mod:`.executors` (local processes or Ray), :mod:`.prepare`, :mod:`.embed`,
:mod:`.search`, :mod:`.extract` (the stages), :mod:`.run` (the driver and the manifest).
With an exact index the pairs and scores are those of ``xling mine`` on the same inputs.
"""

from xling.mining.pipeline.config import MineCorpusConfig, auto_index
from xling.mining.pipeline.executors import LocalExecutor, RayExecutor, make_executor
from xling.mining.pipeline.run import OUTPUT, STAGE_ORDER, mine_corpus

__all__ = ["OUTPUT", "STAGE_ORDER", "LocalExecutor", "MineCorpusConfig", "RayExecutor", "auto_index",
           "make_executor", "mine_corpus"]
