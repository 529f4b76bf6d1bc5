"""The manifest of a frozen model directory: the SHA-256 of every file, checked on loading, and the
manifest's own SHA-256 that names the whole bundle; the library versions a bundle records."""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from biomarkers.errors import ModelBundleError
from biomarkers.io.provenance import sha256_file

#: The file listing the SHA-256 of every other file of a bundle.
MANIFEST = "manifest.json"


def check_manifest(folder: str | Path) -> None:
    """Refuse a bundle whose files are not the ones its manifest lists (see the module docstring)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise ModelBundleError(f"{manifest}: missing; the bundle was written by an older version or "
                               "altered; refit the model")
    try:
        files = json.loads(manifest.read_text())["files"]
        listed = {str(name): str(digest) for name, digest in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ModelBundleError(f"{manifest}: not a bundle manifest; refit the model") from None
    for name, digest in sorted(listed.items()):
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ModelBundleError(f"{path}: listed in {MANIFEST} but missing from the model directory")
        if sha256_file(path) != digest:
            raise ModelBundleError(f"{path}: SHA-256 differs from the one in {MANIFEST} (file changed "
                                   "after fitting); refit the model or restore the file")


def bundle_sha256(folder: str | Path) -> str:
    """SHA-256 of a bundle's manifest: one hash for the whole frozen model."""
    return sha256_file(Path(folder) / MANIFEST)


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in ("biomarkers", "numpy", "pandas", "lifelines", "scikit-survival", "scikit-learn", "torch", "pycox",
                "pyradiomics-bhklab", "SimpleITK"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out
