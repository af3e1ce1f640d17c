"""Bitext mining: faiss kNN in both directions, margin scoring, retrieval modes.

    from xling.mining import mine, mine_files, mine_texts
    pairs = mine(src_emb, tgt_emb, k=4, margin="ratio", mode="max", threshold=1.06, index="Flat")

Modules: :mod:`.index` (embeddings read in chunks, faiss indexes and search),
:mod:`.margin` (vectorised margin scores), :mod:`.mine` (neighbours, retrieval modes,
:func:`mine`), :mod:`.lines` (big text files as offsets + hashes), :mod:`.files`
(mining files and texts, with a model; the ``xling mine`` command calls these).
"""

from xling.mining.files import mine_files, mine_texts, mine_with_model
from xling.mining.index import Embeddings, build_index, knn, search
from xling.mining.margin import MARGINS, margin
from xling.mining.mine import MODES, Neighbours, Pairs, mine, neighbours, select_pairs

__all__ = ["MARGINS", "MODES", "Embeddings", "Neighbours", "Pairs", "build_index", "knn", "margin", "mine",
           "mine_files", "mine_texts", "mine_with_model", "neighbours", "search", "select_pairs"]
