"""Neural network models and the one training loop.

This package imports only torch, numpy and the standard library so it runs on a bare GPU machine. Importing it
registers every model family with :mod:`models.registry`: each module that defines registered models is imported
here, so the registry is complete whatever a caller imports.
"""

from models import eeg_cnn, eeg_cnn_lstm, eeg_transformer, efficientnet, gan, images  # noqa: F401  (registers every model)
from models.registry import create_model, list_models, model_family, register_model

__all__ = ["create_model", "list_models", "model_family", "register_model"]
