"""The radiomics parameter files shipped with the package, by name (no pyradiomics or SimpleITK
import: the workflow resolves them while it parses)."""
from __future__ import annotations

from pathlib import Path

#: Parameter files shipped with the package, by name: ``pet`` (SUV, fixed bin width 0.25,
#: 4 mm isotropic, original + LoG + wavelet) and ``ct`` (HU, bin width 25, 2 mm isotropic).
SHIPPED_PARAMS = {name: Path(__file__).parents[1] / "data" / "radiomics" / f"{name}.yaml" for name in ("pet", "ct")}


def resolve_params(params: str | Path) -> Path:
    """The parameter file for ``params``: a shipped name (:data:`SHIPPED_PARAMS`) or a path."""
    return SHIPPED_PARAMS.get(str(params), Path(params))
