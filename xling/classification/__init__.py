"""Zero-shot cross-lingual classification (issue 5): train on one language, evaluate on all.

- :mod:`.data`: labelled examples from XNLI, MultiNLI, HF ``xnli``, the Bible genres, TSV / JSONL
- :mod:`.model`: fine-tuned encoder + head, or a light head on frozen sentence embeddings
- :mod:`.train`: the training task on the generic trainer (``xling classify train``)
- :mod:`.predict`: a loaded classifier, predictions in input order (``xling classify predict``)
- :mod:`.report`: accuracy per language, average, transfer gap, JSON + PNG
  (``xling evaluate classification``)
"""
