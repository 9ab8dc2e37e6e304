"""qparity: one quantized detector, many inference engines, one evaluator."""

__version__ = "0.1.0"
