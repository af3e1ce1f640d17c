"""xling: multilingual pretraining and cross-lingual transfer in plain PyTorch."""

__version__ = "0.1.0"
