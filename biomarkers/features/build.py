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


def _read_tables(paths: Sequence[str | Path], what: str) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Lesion tables by subject (from their metadata); a subject twice is an error."""
    tables: dict[str, tuple[Path, pd.DataFrame]] = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FeatureTableError(f"{what} does not exist", path=path)
        sid = read_parquet_metadata(path).get("subject_id")
        if sid is None:
            raise FeatureTableError(f"{what} has no subject_id metadata (write it with `biomarkers features` "
                                    "or `biomarkers embed`)", path=path)
        if sid in tables:
            raise FeatureTableError(f"second {what} of the subject (first: {tables[sid][0]})", sid, path)
        frame = pd.read_parquet(path)
        if "subject_id" in frame.columns and len(frame):
            others = sorted(set(frame["subject_id"].astype(str)) - {str(sid)})
            if others:
                raise FeatureTableError(f"{what} has rows of subject {others[0]}, but its metadata names this "
                                        "subject; rebuild it with `biomarkers features`", sid, path)
        if "lesion_id" in frame.columns and frame["lesion_id"].duplicated().any():
            lesion = frame["lesion_id"][frame["lesion_id"].duplicated()].iloc[0]
            raise FeatureTableError(f"{what} has lesion {lesion} more than once (a lesion would count twice); "
                                    "rebuild it with `biomarkers features`", sid, path)
        tables[sid] = (path, frame)
    return tables


def build_cohort_table(subjects_path: str | Path, lesion_paths: Sequence[str | Path], cohort: str,
                       out: str | Path, covariates: Sequence[str] = (),
                       categorical: Mapping[str, Sequence[str]] | None = None,
                       texture: str = "largest", extra_paths: Sequence[str | Path] = ()) -> pd.DataFrame:
    """Write the feature table of the subjects of ``cohort``; every one needs a lesion file.

    The subject of a lesion file is taken from its metadata (written by ``biomarkers
    features``), so that subjects without any lesion are still accounted for. ``extra_paths``
    are further per-lesion tables of the same lesions (e.g. ``biomarkers embed``'s ``deep_*``
    features, one per subject): their columns join the lesion rows before aggregation, and their
    lesion labels must be the lesion table's.
    """
    sheet = read_subjects(subjects_path)
    members = sheet[sheet["cohort"] == cohort]
    if members.empty:
        raise SubjectsSheetError(f"no subject has cohort {cohort!r}", path=subjects_path)
    tables = _read_tables(lesion_paths, "lesion table")
    missing = sorted(set(members["subject_id"]) - set(tables))
    if missing:
        raise FeatureTableError(f"no lesion table for subject(s) {', '.join(missing[:5])}"
                                f"{' ...' if len(missing) > 5 else ''} of cohort {cohort}")
    stray = sorted(set(tables) - set(members["subject_id"]))
    if stray:
        raise FeatureTableError(f"lesion table of a subject outside cohort {cohort}", stray[0], tables[stray[0]][0])
    extra = _read_tables(extra_paths, "extra lesion table")
    if extra and set(extra) != set(tables):
        sid = sorted(set(extra) ^ set(tables))[0]
        raise FeatureTableError("subject has a lesion table but no extra lesion table, or the other way round", sid)
    frames = []
    for sid, (path, frame) in tables.items():
        if sid in extra:
            extra_path, more = extra[sid]
            if sorted(more["lesion_id"]) != sorted(frame["lesion_id"]):
                raise FeatureTableError(f"lesion labels differ from those of {path.name}", sid, extra_path)
            frame = frame.merge(more.drop(columns="subject_id"), on="lesion_id", how="left", validate="one_to_one")
        frames.append(frame)
    lesions = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    table = feature_table(members, lesions, covariates, categorical, str(subjects_path), texture)
    write_parquet(table, out, {"cohort": cohort, "subjects_sheet": file_record(subjects_path),
                               "covariates": list(covariates), "categorical": dict(categorical or {}),
                               "texture_aggregation": texture,
                               "extra_lesion_tables": [file_record(p) for p, _ in extra.values()]})
    return table
