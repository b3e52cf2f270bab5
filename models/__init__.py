"""Neural network models and the one training loop.

This package imports only torch, numpy and the standard library so it runs on a bare GPU machine. Importing it
registers every model family with :mod:`models.registry`.
"""

from models import eeg, gan, images  # noqa: F401  (registers the EEG, GAN and image models)
from models.registry import create_model, list_models, model_family, register_model

__all__ = ["create_model", "list_models", "model_family", "register_model"]
