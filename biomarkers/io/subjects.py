"""The subjects sheet: one row per subject with image paths, outcome and covariates."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from biomarkers.errors import InputError, SubjectsSheetError

#: Columns every subjects sheet must have, besides its PET: ``pet`` (an SUV image) or ``pet_dicom``
#: (a DICOM series folder, for ``pet_source: dicom``).
REQUIRED_COLUMNS = ("subject_id", "cohort", "center", "time", "event")
#: What a subject ID and a cohort name may be: letters, digits, ".", "_" and "-", starting with a
#: letter or digit. They become file names and command-line arguments of the workflow, so a
#: space, a slash or a shell character ("$", "`", ";") in them is refused rather than escaped.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Columns holding file paths, resolved relative to the sheet's folder.
PATH_COLUMNS = ("pet", "pet_dicom", "ct", "ct_dicom", "mask", "organs")


def sheet_separator(path: str | Path) -> str:
    """The column separator of a sheet: ``,`` for ``.csv``, a tab for ``.tsv``/``.tab``, else
    whichever of the two the header line holds (a tab when it holds both or neither)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".tab"):
        return "\t"
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    return "," if "," in header and "\t" not in header else "\t"


def read_subjects(path: str | Path, required: Sequence[str] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Read and check a subjects sheet (comma or tab separated: :func:`sheet_separator`).

    Relative paths in the path columns are resolved against the sheet's folder.

    Raises
    ------
    SubjectsSheetError
        Missing file or column, duplicate subject IDs, or invalid outcome values;
        the message names the sheet and, where one is at fault, the subject.
    """
    path = Path(path)
    if not path.is_file():
        raise SubjectsSheetError("subjects sheet does not exist", path=path)
    sep = sheet_separator(path)
    df = pd.read_csv(path, sep=sep, dtype={"subject_id": str, "cohort": str, "center": str})
    missing = [c for c in required if c not in df.columns]
    if missing:
        other = "," if sep == "\t" else "\t"
        hint = ""
        if len(df.columns) == 1 and other in str(df.columns[0]):
            hint = f" (its header is one column holding {'commas' if other == ',' else 'tabs'}: name it .csv or .tsv)"
        else:
            hint = f" (it has: {', '.join(map(str, df.columns[:12]))}{' ...' if len(df.columns) > 12 else ''}; " \
                   "rename with `biomarkers init --map OLD=NEW`)"
        raise SubjectsSheetError(f"subjects sheet lacks column(s) {', '.join(missing)}{hint}", path=path)
    if required is REQUIRED_COLUMNS and "pet" not in df.columns and "pet_dicom" not in df.columns:
        raise SubjectsSheetError("subjects sheet lacks column pet (SUV images) or pet_dicom (DICOM series)", path=path)
    if df["subject_id"].isna().any():
        raise SubjectsSheetError(f"empty subject_id in row {int(df['subject_id'].isna().argmax()) + 2}", path=path)
    for column in ("subject_id", "cohort"):
        if column not in df.columns:
            continue
        unsafe = [v for v in df[column].dropna() if not SAFE_NAME.fullmatch(v)]
        if unsafe:
            raise SubjectsSheetError(f"{column} {unsafe[0]!r} may hold only letters, digits, '.', '_' and '-' "
                                     "(starting with a letter or digit, at most 128 characters); rename it",
                                     path=path)
    dup = df["subject_id"][df["subject_id"].duplicated()]
    if len(dup):
        raise SubjectsSheetError("subject_id appears more than once", subject_id=dup.iloc[0], path=path)
    if "time" in df.columns:
        check_outcome(df, path)
    for col in PATH_COLUMNS:
        if col in df.columns:
            df[col] = [None if pd.isna(p) else str((path.parent / p) if not Path(p).is_absolute() else Path(p))
                       for p in df[col]]
    return df


def check_outcome(df: pd.DataFrame, path: str | Path, error: type[InputError] = SubjectsSheetError) -> None:
    """Refuse a ``time`` that is not a positive finite number and an ``event`` (when present) other
    than 0 or 1, naming the first such subject and ``path``: the same check for the subjects sheet,
    feature tables and score tables (``error``: the error class to raise)."""
    time = pd.to_numeric(df["time"], errors="coerce")
    bad = ~np.isfinite(time) | (time <= 0)
    if bad.any():
        sid = str(df["subject_id"][bad].iloc[0])
        raise error(f"time must be a positive number, got {df['time'][bad].iloc[0]!r}", sid, path)
    if "event" in df.columns:
        ok = df["event"].isin([0, 1, True, False])
        if not ok.all():
            sid = str(df["subject_id"][~ok].iloc[0])
            raise error(f"event must be 0 or 1, got {df['event'][~ok].iloc[0]!r}", sid, path)


def subject_row(df: pd.DataFrame, subject_id: str, path: str | Path) -> pd.Series:
    """The sheet's row of one subject, or an error naming the sheet."""
    rows = df[df["subject_id"] == subject_id]
    if rows.empty:
        raise SubjectsSheetError("subject not in subjects sheet", subject_id=subject_id, path=path)
    return rows.iloc[0]


def check_subject_files(df: pd.DataFrame, columns: Sequence[str], path: str | Path) -> None:
    """Raise :class:`InputError` for the first subject whose file in ``columns`` is missing."""
    for col in columns:
        if col not in df.columns:
            raise SubjectsSheetError(f"subjects sheet lacks column {col}", path=path)
        for sid, file in zip(df["subject_id"], df[col]):
            if file is None or pd.isna(file):
                raise SubjectsSheetError(f"no {col} file given", subject_id=sid, path=path)
            if not Path(file).exists():
                raise InputError(f"{col} file does not exist (listed in {path})", subject_id=sid, path=file)


def write_image_sheet(path: str | Path, out: str | Path, columns: dict[str, str]) -> pd.DataFrame:
    """A copy of the subjects sheet ``path`` whose image columns in ``columns`` name other files
    (``{"ct": "results/ct/{subject}.nii.gz"}``: the converted images), written as TSV to ``out``
    with every path relative to ``out``'s folder.

    Raises
    ------
    SubjectsSheetError
        A pattern without ``{subject}``, or a column that is not an image column.
    """
    from biomarkers.io.atomic import write_tsv

    sheet = read_subjects(path)
    for column, pattern in columns.items():
        if column not in PATH_COLUMNS or "{subject}" not in pattern:
            raise SubjectsSheetError(f"--column {column}={pattern}: the column must be one of "
                                     f"{', '.join(PATH_COLUMNS)} and the pattern hold {{subject}}", path=path)
        sheet[column] = [pattern.format(subject=sid) for sid in sheet["subject_id"]]
    folder = Path(out).resolve().parent
    for column in PATH_COLUMNS:
        if column in sheet.columns:
            sheet[column] = [None if p is None else os.path.relpath(Path(p).resolve(), folder) for p in sheet[column]]
    write_tsv(sheet, out, float_format="%.17g")
    return sheet
