"""pyradiomics on every lesion label, adding nothing but bookkeeping.

The parameter file is pyradiomics' own YAML format, validated by pyradiomics against its
schema; the numbers are exactly those of ``RadiomicsFeatureExtractor.execute`` on the same
image, mask, label and file.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Iterable

import pandas as pd
import SimpleITK as sitk

from biomarkers.errors import InputError
from biomarkers.features.params import SHIPPED_PARAMS, resolve_params
from biomarkers.io.provenance import file_record

__all__ = ["SHIPPED_PARAMS", "resolve_params", "make_extractor", "radiomics_features"]


def make_extractor(params_path: str | Path):
    """A pyradiomics extractor configured from ``params_path`` (a path or a shipped name; quiet logging).

    Extractors are cached per file (path, size and modification time): ``execute`` works on a
    copy of the settings, so one extractor serves every lesion and subject of a process.
    """
    params_path = resolve_params(params_path)
    if not params_path.is_file():
        raise InputError("pyradiomics parameter file does not exist", path=params_path)
    stat = params_path.stat()
    return _cached_extractor(str(params_path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _cached_extractor(params_path: str, size: int, mtime_ns: int):
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    try:
        return featureextractor.RadiomicsFeatureExtractor(params_path)
    except Exception as exc:  # pykwalify raises its own SchemaError types
        msg = " ".join(str(exc).split())[:300]
        raise InputError(f"invalid pyradiomics parameter file ({msg})", path=params_path) from None


def radiomics_features(image: sitk.Image, labels: sitk.Image, lesion_ids: Iterable[int], params_path: str | Path,
                       subject_id: str | None = None, mask_path: str | Path | None = None,
                       progress: bool = False, refused: dict[int, str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Run pyradiomics once per lesion label.

    ``refused``: where a lesion pyradiomics cannot use (too small for the parameter file's
    resampling, a single voxel or a line of voxels) is recorded, ``{label: reason}``, and left
    out of the table; without it such a lesion raises :class:`InputError`.

    Returns
    -------
    features : DataFrame
        ``lesion_id`` then pyradiomics' feature columns (its own names, diagnostics dropped).
    settings : dict
        pyradiomics' version, the enabled image types, feature classes and settings, for the
        output table's metadata.
    """
    import radiomics
    from tqdm import tqdm

    extractor = make_extractor(params_path)
    ids = [int(i) for i in lesion_ids]
    rows = []
    for lesion_id in tqdm(ids, desc=f"pyradiomics {subject_id or ''}".strip(), disable=not progress, leave=False):
        try:
            result = extractor.execute(image, labels, label=lesion_id)
        except ValueError as exc:
            reason = " ".join(str(exc).split())
        except RuntimeError as exc:  # SimpleITK, when resampling leaves no voxel of the label
            if "No label object" not in str(exc):
                raise
            reason = "no voxel left after resampling to the parameter file's voxel size"
        else:
            reason = None
        if reason is not None:
            if refused is None:
                raise InputError(f"pyradiomics cannot use lesion label {lesion_id} ({reason})", subject_id, mask_path)
            refused[lesion_id] = reason
            continue
        row = {"lesion_id": lesion_id}
        row.update({k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")})
        rows.append(row)
    settings = {
        "pyradiomics_version": radiomics.__version__,
        "params_file": file_record(resolve_params(params_path)),
        "image_types": extractor.enabledImagetypes,
        "feature_classes": extractor.enabledFeatures,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in extractor.settings.items()},
    }
    features = pd.DataFrame(rows) if rows else pd.DataFrame({"lesion_id": pd.Series([], dtype="int64")})
    return features, settings
