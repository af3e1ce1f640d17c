"""Exporting xling models for inference outside xling: :mod:`xling.export.onnx`
(``xling export onnx``; needs the ``onnx`` extra)."""
