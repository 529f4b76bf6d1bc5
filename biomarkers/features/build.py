"""Assemble a cohort's feature table from the sheet and per-subject lesion files."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from biomarkers.errors import FeatureTableError, SubjectsSheetError
from biomarkers.features.aggregate import feature_table
from biomarkers.io.atomic import read_parquet_metadata, write_parquet
from biomarkers.io.provenance import file_record
from biomarkers.io.subjects import read_subjects


def build_cohort_table(subjects_path: str | Path, lesion_paths: Sequence[str | Path], cohort: str,
                       out: str | Path, covariates: Sequence[str] = (),
                       categorical: Mapping[str, Sequence[str]] | None = None,
                       texture: str = "largest") -> pd.DataFrame:
    """Write the feature table of the subjects of ``cohort``; every one needs a lesion file.

    The subject of a lesion file is taken from its metadata (written by ``biomarkers
    features``), so that subjects without any lesion are still accounted for.
    """
    sheet = read_subjects(subjects_path)
    members = sheet[sheet["cohort"] == cohort]
    if members.empty:
        raise SubjectsSheetError(f"no subject has cohort {cohort!r}", path=subjects_path)
    frames, seen = [], {}
    for path in lesion_paths:
        path = Path(path)
        if not path.is_file():
            raise FeatureTableError("lesion table does not exist", path=path)
        sid = read_parquet_metadata(path).get("subject_id")
        if sid is None:
            raise FeatureTableError("lesion table has no subject_id metadata (write it with `biomarkers features`)",
                                    path=path)
        if sid in seen:
            raise FeatureTableError(f"second lesion table of the subject (first: {seen[sid]})", sid, path)
        seen[sid] = path
        frames.append(pd.read_parquet(path))
    missing = sorted(set(members["subject_id"]) - set(seen))
    if missing:
        raise FeatureTableError(f"no lesion table for subject(s) {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''} of cohort {cohort}")
    stray = sorted(set(seen) - set(members["subject_id"]))
    if stray:
        raise FeatureTableError(f"lesion table of a subject outside cohort {cohort}", stray[0], seen[stray[0]])
    lesions = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    table = feature_table(members, lesions, covariates, categorical, str(subjects_path), texture)
    write_parquet(table, out, {"cohort": cohort, "subjects_sheet": file_record(subjects_path),
                               "covariates": list(covariates), "categorical": dict(categorical or {}),
                               "texture_aggregation": texture})
    return table
