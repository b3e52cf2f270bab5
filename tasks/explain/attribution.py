"""Attribution maps of image classifiers through captum, and the two checks of whether a map means anything.

A saliency map can look convincing and still say nothing about the model: Adebayo et al. 2018 ("Sanity Checks for
Saliency Maps") showed maps that barely change when the network's weights are replaced by random ones. So besides
drawing Grad-CAM (Selvaraju et al. 2017) and LIME (Ribeiro et al. 2016) — both computed by captum, nothing
hand-written — this module measures:

- **model randomisation**: the Spearman rank correlation between an image's Grad-CAM map and the map of a copy of
  the model whose last block (and every layer above it, Adebayo's cascading randomisation) was re-initialised.
  Near 1: the map does not depend on what the model learned. Absolute maps are compared (Adebayo's "ABS" variant:
  a map whose sign flipped but whose structure stayed is not counted as changed).
- **deletion** (Petsiuk et al. 2018, RISE): remove the pixels the map ranks highest, in steps, and record the
  model's probability of the class it explained; the area under that curve should be lower than with a random
  removal order.

**The last block**, found without knowing the architecture: walk the model's children in registration order,
descending through plain containers (``Sequential``, ``ModuleList``, ``ModuleDict``); the last unit found that has
children of its own and contains a ``Conv2d`` is the last block (a residual block, a Fire module, an MBConv block).
The cascade re-initialises it and every unit registered after it (EfficientNet-Lite's 1x1 head conv and its
BatchNorm, the classifier) — vigil's image models register modules in forward order. A model without such a block
falls back to its last ``Conv2d``. A layer without ``reset_parameters`` (a fitted kernel head holds only buffers)
keeps its values.

Pure functions: no Prefect, no files; randomness only through the ``seed`` arguments.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import LayerAttribution, LayerGradCam, Lime
from scipy.stats import spearmanr
from skimage.segmentation import slic
from torch import nn

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


# ------------------------------------------------------------------------------------------------ which layers


def _units(module: nn.Module) -> Iterator[nn.Module]:
    """The model's parts in registration order, with plain containers opened."""
    for child in module.children():
        if type(child) in _CONTAINERS:
            yield from _units(child)
        else:
            yield child


def _has_conv(module: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in module.modules())


def module_name(model: nn.Module, target: nn.Module) -> str:
    """The dotted name of ``target`` inside ``model`` (``""`` for the model itself)."""
    return next((name for name, m in model.named_modules() if m is target), "?")


def last_block_cascade(model: nn.Module) -> list[nn.Module]:
    """The last convolutional block and every unit after it (see the module docstring for the rule).

    Raises:
        ValueError: If the model has no ``Conv2d`` at all (Grad-CAM needs a spatial map).
    """
    units = list(_units(model))
    with_conv = [i for i, u in enumerate(units) if _has_conv(u)]
    if not with_conv:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer: Grad-CAM and its randomisation check need one")
    blocks = [i for i in with_conv if any(True for _ in units[i].children())]
    return units[blocks[-1] if blocks else with_conv[-1] :]


def gradcam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains: the model's ``feature_layer`` (the ``forward_features`` map, timm-style) when
    it has one, else the last convolutional block."""
    layer = getattr(model, "feature_layer", None)
    return layer if isinstance(layer, nn.Module) else last_block_cascade(model)[0]


def randomised_copy(model: nn.Module, seed: int) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with its last block and everything above it re-initialised (seeded); the names of the
    re-initialised units. The original is untouched."""
    twin = copy.deepcopy(model).eval()
    cascade = last_block_cascade(twin)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for unit in cascade:
            for m in unit.modules():
                if callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()
    return twin, [module_name(twin, u) for u in cascade]


# ------------------------------------------------------------------------------------------------------- maps


def gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: torch.Tensor, relu: bool) -> np.ndarray:
    """Grad-CAM maps ``(B, h, w)`` at ``layer``'s resolution for each image's ``target`` class (captum).

    ``relu`` keeps only what speaks for the class (the map as drawn); without it the signed map is returned.
    """
    attr = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=relu)  # (B, 1, h, w)
    return attr.detach()[:, 0].float().numpy()


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Maps ``(B, h, w)`` bilinearly upsampled to ``(B, H, W)`` (captum's ``LayerAttribution.interpolate``)."""
    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    return LayerAttribution.interpolate(t, size, interpolate_mode="bilinear")[:, 0].numpy()


def superpixels(image: np.ndarray, n_segments: int) -> np.ndarray:
    """SLIC superpixels ``(H, W)`` int labels of an ``(H, W, C)`` image in [0, 1] — the regions LIME toggles."""
    grey = image.shape[2] == 1
    segments = slic(
        image[:, :, 0] if grey else image,
        n_segments=n_segments,
        compactness=0.1 if grey else 10.0,
        channel_axis=None if grey else -1,
        start_label=0,
    ).astype(np.int64)
    if len(np.unique(segments)) >= 4:
        return segments
    # A nearly flat image gives SLIC nothing to follow: a square grid of about n_segments cells instead.
    h, w = image.shape[:2]
    side = max(1, int(round(np.sqrt(n_segments))))
    rows, cols = np.arange(h) * side // h, np.arange(w) * side // w
    return (rows[:, None] * side + cols[None, :]).astype(np.int64)


def lime(
    model: nn.Module,
    x: torch.Tensor,
    target: int,
    segments: np.ndarray,
    n_samples: int,
    seed: int,
    batch_size: int = 32,
) -> np.ndarray:
    """LIME weights of one image ``x`` (1, C, H, W) for class ``target``, spread over its superpixels ``(H, W)``.

    Switched-off superpixels take the value 0 (the training mean after normalisation). The surrogate is a ridge
    regression (alpha 1), as in the LIME authors' own package; captum's default lasso zeroes every weight when the
    probability moves little. captum draws the on/off patterns from torch's generator, seeded here.
    """
    mask = torch.from_numpy(segments)[None, None].expand_as(x[:, :1]).expand_as(x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attr = Lime(model, interpretable_model=SkLearnRidge(alpha=1.0)).attribute(
            x,
            target=target,
            feature_mask=mask,
            n_samples=n_samples,
            baselines=0.0,
            perturbations_per_eval=max(1, min(batch_size, n_samples)),
        )
    return attr.detach()[0].float().mean(0).numpy()  # (H, W)


# ------------------------------------------------------------------------------------------------------ checks


def rank_correlation(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> float:
    """Spearman rank correlation of two maps (flattened; ties get their average rank). NaN when either map is
    constant (no ranking to compare). ``absolute`` compares ``|a|`` with ``|b|`` (Adebayo et al. 2018, "ABS")."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def removal_order(saliency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices (flattened ``(H, W)``) from the most to the least salient; ties in random order."""
    flat = np.ravel(saliency)
    return np.lexsort((rng.random(flat.size), -flat))


def deletion_curve(
    score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: np.ndarray, steps: int, baseline: float = 0.0
) -> np.ndarray:
    """The model's score for one image ``x`` (C, H, W) as the pixels in ``order`` are removed in ``steps`` steps.

    Step ``k`` sets the first ``round(k / steps * H * W)`` pixels of ``order`` (every channel) to ``baseline``;
    ``score`` maps a batch ``(N, C, H, W)`` to ``(N,)`` (e.g. the explained class's probability). Returns the
    ``steps + 1`` scores, the intact image's first.
    """
    c, h, w = x.shape
    counts = np.round(np.linspace(0, h * w, steps + 1)).astype(int)
    batch = x.unsqueeze(0).repeat(steps + 1, 1, 1, 1).reshape(steps + 1, c, h * w)
    for k, n in enumerate(counts):
        batch[k, :, torch.from_numpy(order[:n])] = baseline
    with torch.no_grad():
        return score(batch.reshape(steps + 1, c, h, w)).float().numpy()


def curve_auc(curve: np.ndarray) -> float:
    """Area under a deletion curve over the removed fraction 0 .. 1 (trapezoid rule)."""
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def class_probability(model: nn.Module, target: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``batch -> softmax probability of class target``: the score a deletion curve follows."""

    def score(batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(batch).float(), dim=1)[:, target]

    return score
