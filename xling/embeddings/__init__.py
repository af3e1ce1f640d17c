"""Sentence embeddings: LASER-style encoders (BiLSTM or transformer, max/mean/cls pooling)
trained through a bottleneck decoder and a translation-ranking loss; encoding and decoding.

    from xling.embeddings import SentenceEncoder
    enc = SentenceEncoder.from_pretrained("runs/laser/model")
    X = enc.encode(texts, lang="de", batch_size=64, normalize=True)   # (n, D) float32
"""

from xling.embeddings.api import SentenceEncoder, embed_ids
from xling.embeddings.config import SentenceEmbedderConfig
from xling.embeddings.model import SentenceEmbedder

__all__ = ["SentenceEmbedder", "SentenceEmbedderConfig", "SentenceEncoder", "embed_ids"]
