"""One registry for every model family (image, EEG, GAN).

timm's pattern: a factory function is decorated with ``@register_model(family)`` and is then reachable by name
through :func:`create_model`, so configs name architectures as strings and tests can iterate over every model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

ModelFactory = TypeVar("ModelFactory", bound=Callable[..., nn.Module])

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, str] = {}


def register_model(family: str) -> Callable[[ModelFactory], ModelFactory]:
    """Return a decorator that registers a model factory under its function name.

    Args:
        family: Model family the factory belongs to (``"image"``, ``"eeg"``, ``"gan"``); lets callers and the
            contract tests list only the models that accept a given input.

    Returns:
        A decorator that records the factory and returns it unchanged, so the function stays importable.

    Raises:
        ValueError: If ``family`` is empty or a model with the same name is already registered (two factories
            silently shadowing each other would make a config string ambiguous).
    """
    if not family:
        raise ValueError("register_model needs a non-empty family name, e.g. @register_model('image')")

    def decorator(factory: ModelFactory) -> ModelFactory:
        name = factory.__name__
        if name in _FACTORIES:
            raise ValueError(
                f"model {name!r} is already registered (family {_FAMILIES[name]!r}); rename the factory function"
            )
        _FACTORIES[name] = factory
        _FAMILIES[name] = family
        return factory

    return decorator


def _unknown(name: str) -> KeyError:
    known = ", ".join(list_models()) or "(none registered; did you import models?)"
    return KeyError(f"unknown model {name!r}; known models: {known}")


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name.

    Args:
        name: The factory's function name, e.g. ``"resnet_small"``.
        **kwargs: Passed to the factory (image models: ``in_chans``, ``num_classes``, ``drop_rate`` and any
            architecture override the factory accepts).

    Returns:
        The freshly initialised module.

    Raises:
        KeyError: If ``name`` is not registered; the message lists every known name.
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise _unknown(name) from None
    return factory(**kwargs)


def list_models(family: str | None = None) -> list[str]:
    """Return the registered model names, sorted, optionally only those of one family."""
    return sorted(n for n, f in _FAMILIES.items() if family is None or f == family)


def model_family(name: str) -> str:
    """Return the family a registered model belongs to.

    Raises:
        KeyError: If ``name`` is not registered; the message lists every known name.
    """
    try:
        return _FAMILIES[name]
    except KeyError:
        raise _unknown(name) from None
