"""Errors of the training pipelines: one base, a one-line message that says what to do.

TrainingError
├── NoData            nothing to work on (empty history, a date without data)
├── ParityError       the exported ONNX graph does not score like the native model
├── SchemaMismatch    a model requires another feature schema than the features offer
├── UpstreamError     the product DB or the artifact store failed (wraps their errors)
└── EngineUnavailable the requested engine cannot run here (``--engine spark``: pyspark or
                      Java 17+ missing)
"""

from __future__ import annotations


class TrainingError(Exception):
    """Base of every training pipeline error; ``rankswap`` maps it to exit code 2."""


class NoData(TrainingError):
    """There is no data for the requested date / tenant."""


class ParityError(TrainingError):
    """Native and ONNX scores differ by more than the tolerance; nothing was published."""


class SchemaMismatch(TrainingError):
    """The model and the feature artifact disagree on the feature schema version."""


class UpstreamError(TrainingError):
    """The product DB or the artifact store failed."""


class EngineUnavailable(TrainingError):
    """The requested engine cannot run here; the message says what to install."""
