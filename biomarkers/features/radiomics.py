"""pyradiomics on every lesion label, adding nothing but bookkeeping.

The parameter file is pyradiomics' own YAML format, validated by pyradiomics against its
schema; the numbers are exactly those of ``RadiomicsFeatureExtractor.execute`` on the same
image, mask, label and file.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import pandas as pd
import SimpleITK as sitk

from biomarkers.errors import InputError
from biomarkers.io.provenance import file_record


def make_extractor(params_path: str | Path):
    """A pyradiomics extractor configured from ``params_path`` (quiet logging)."""
    import radiomics
    from radiomics import featureextractor

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("pykwalify").setLevel(logging.CRITICAL)
    params_path = Path(params_path)
    if not params_path.is_file():
        raise InputError("pyradiomics parameter file does not exist", path=params_path)
    try:
        return featureextractor.RadiomicsFeatureExtractor(str(params_path))
    except Exception as exc:  # pykwalify raises its own SchemaError types
        msg = " ".join(str(exc).split())[:300]
        raise InputError(f"invalid pyradiomics parameter file ({msg})", path=params_path) from None


def radiomics_features(image: sitk.Image, labels: sitk.Image, lesion_ids: Iterable[int], params_path: str | Path,
                       subject_id: str | None = None, mask_path: str | Path | None = None,
                       progress: bool = False) -> tuple[pd.DataFrame, dict]:
    """Run pyradiomics once per lesion label.

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
            raise InputError(f"pyradiomics cannot use lesion label {lesion_id} ({exc})",
                             subject_id, mask_path) from None
        row = {"lesion_id": lesion_id}
        row.update({k: float(v) for k, v in result.items() if not k.startswith("diagnostics_")})
        rows.append(row)
    settings = {
        "pyradiomics_version": radiomics.__version__,
        "params_file": file_record(params_path),
        "image_types": extractor.enabledImagetypes,
        "feature_classes": extractor.enabledFeatures,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in extractor.settings.items()},
    }
    return pd.DataFrame(rows), settings
