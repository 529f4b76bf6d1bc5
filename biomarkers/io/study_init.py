"""A study folder from a user's own files: ``biomarkers init``.

From a clinical sheet (CSV or TSV) whose columns are renamed with a mapping
(``patient=subject_id,os_days=time``), image paths found by patterns (``images/{subject_id}_pet.nrrd``,
``dicom/{subject_id}/PET``; any sheet column may appear in braces, ``*`` matches as in a shell and
must match exactly one file), it writes ``subjects.tsv`` (paths relative to the study folder) and a
``config.yaml`` in which every setting of ``workflow/schemas/config.schema.yaml`` is written out with
its default and the schema's description as a comment, the ones the files decide set accordingly
(DICOM PET, organ masks or none, covariates and their levels, the training and validation cohorts).
Every file is checked before anything is written; the two files appear together or not at all.
"""
from __future__ import annotations

import glob
import json
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from biomarkers.errors import InputError, SubjectsSheetError
from biomarkers.io.subjects import REQUIRED_COLUMNS, read_subjects, sheet_separator

#: The schema the workflow validates every config against (a file of the repository).
SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
#: Image columns a pattern can fill, and whether each is a file or a DICOM folder.
IMAGE_COLUMNS = ("pet", "pet_dicom", "ct", "ct_dicom", "mask", "organs")
#: The a-priori imaging features of a new study (burden, intensity, spread, heterogeneity), as the demo's.
IMAGING_FEATURES = ("total_mtv_ml", "total_tlg", "lesion_count", "dissemination_mm", "suv_max",
                    "largest_original_firstorder_Entropy", "largest_original_firstorder_Skewness",
                    "largest_original_firstorder_Kurtosis", "largest_original_glcm_JointEntropy",
                    "largest_original_glcm_Contrast", "largest_original_glszm_ZoneEntropy")


@dataclass
class StudyLayout:
    """What ``init`` is told about the user's files."""

    sheet: Path
    out: Path
    mapping: dict[str, str] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)
    root: Path | None = None
    validation_centers: list[str] = field(default_factory=list)
    training_cohort: str = "train"
    covariates: list[str] = field(default_factory=list)
    categorical: dict[str, list[str] | None] = field(default_factory=dict)
    results: str | None = None


def parse_mapping(text: str) -> dict[str, str]:
    """``old=new,old2=new2`` as a dict; an empty text is no renaming."""
    out: dict[str, str] = {}
    for item in [t.strip() for t in text.split(",") if t.strip()]:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"--map expects OLD=NEW pairs separated by commas, got {item!r}")
        out[old.strip()] = new.strip()
    return out


def init_study(layout: StudyLayout, force: bool = False) -> tuple[Path, Path]:
    """Write ``subjects.tsv`` and ``config.yaml`` into ``layout.out``; return their paths.

    Raises
    ------
    SubjectsSheetError, InputError
        A column the mapping names that the sheet lacks, a required column missing after it, a
        pattern that finds no file (or several) for a subject, a study folder that exists.
    """
    out = layout.out
    sheet_path, config_path = out / "subjects.tsv", out / "config.yaml"
    if not force and (sheet_path.exists() or config_path.exists()):
        raise InputError("study folder already holds subjects.tsv or config.yaml; give another --out or --force",
                         path=out)
    table = _mapped_sheet(layout)
    root = layout.root or layout.sheet.parent
    for column, pattern in layout.patterns.items():
        if column not in IMAGE_COLUMNS:
            raise ValueError(f"no image column {column!r}; patterns fill {', '.join(IMAGE_COLUMNS)}")
        table[column] = [_find(root, pattern, row, column, layout.sheet) for _, row in table.iterrows()]
    for column in IMAGE_COLUMNS:  # paths of the sheet itself: relative to the sheet's folder
        if column in table.columns and column not in layout.patterns:
            table[column] = [None if pd.isna(p) else str(layout.sheet.parent / p) for p in table[column]]
    if "cohort" not in table.columns:
        if not layout.validation_centers:
            raise SubjectsSheetError("the sheet has no cohort column; name the validation centre(s) with "
                                     "--validation-centers (the others form the training cohort)", path=layout.sheet)
        unknown = sorted(set(layout.validation_centers) - set(table["center"].astype(str)))
        if unknown:
            raise SubjectsSheetError(f"validation centre(s) {', '.join(unknown)} not in the sheet's center column "
                                     f"({', '.join(sorted(set(table['center'].astype(str))))})", path=layout.sheet)
        table.insert(1, "cohort", ["validation" if str(c) in layout.validation_centers else layout.training_cohort
                                   for c in table["center"]])
    categorical = _levels(table, layout.categorical, layout.sheet)
    out.mkdir(parents=True, exist_ok=True)
    for column in IMAGE_COLUMNS:
        if column in table.columns:
            table[column] = [None if p is None or pd.isna(p) else os.path.relpath(os.path.abspath(p), out)
                             for p in table[column]]
    staged_sheet = out / ".subjects.tsv.init"
    staged_config = out / ".config.yaml.init"
    try:
        table.to_csv(staged_sheet, sep="\t", index=False)
        checked = read_subjects(staged_sheet)  # the workflow's own checks, before anything is final
        for column in IMAGE_COLUMNS:
            for sid, path in zip(checked["subject_id"], checked.get(column, [])):
                if path is not None and not Path(path).exists():
                    raise InputError(f"{column} file does not exist", sid, path)
        staged_config.write_text(config_text(_overrides(layout, checked, categorical, sheet_path)))
        os.replace(staged_sheet, sheet_path)
        os.replace(staged_config, config_path)
    finally:
        for staged in (staged_sheet, staged_config):
            if staged.exists():
                staged.unlink()
    return sheet_path, config_path


def _mapped_sheet(layout: StudyLayout) -> pd.DataFrame:
    sep = sheet_separator(layout.sheet)
    if not layout.sheet.is_file():
        raise SubjectsSheetError("sheet does not exist", path=layout.sheet)
    table = pd.read_csv(layout.sheet, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    absent = [old for old in layout.mapping if old not in table.columns]
    if absent:
        raise SubjectsSheetError(f"--map names column(s) {', '.join(absent)} the sheet lacks (it has: "
                                 f"{', '.join(table.columns[:12])})", path=layout.sheet)
    table = table.rename(columns=layout.mapping)
    needed = [c for c in REQUIRED_COLUMNS if c != "cohort"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise SubjectsSheetError(f"sheet lacks column(s) {', '.join(missing)} (it has: {', '.join(table.columns[:12])}); "
                                 "rename yours with --map OLD=NEW,...", path=layout.sheet)
    absent = [c for c in layout.covariates if c not in table.columns]
    if absent:
        raise SubjectsSheetError(f"covariate column(s) {', '.join(absent)} not in the sheet", path=layout.sheet)
    return table


def _find(root: Path, pattern: str, row: pd.Series, column: str, sheet: Path) -> str:
    sid = str(row["subject_id"])
    try:
        relative = pattern.format(**{str(k): v for k, v in row.items()})
    except KeyError as exc:
        raise SubjectsSheetError(f"pattern {pattern!r} of {column} names {exc.args[0]!r}, not a column of the sheet",
                                 path=sheet) from None
    found = sorted(glob.glob(str(root / relative)))
    if len(found) != 1:
        what = "no file or folder" if not found else f"{len(found)} files ({', '.join(Path(f).name for f in found[:3])})"
        raise InputError(f"{column} pattern {pattern!r} finds {what}; it must find exactly one", sid, root / relative)
    return found[0]


def _levels(table: pd.DataFrame, categorical: Mapping[str, list[str] | None], sheet: Path) -> dict[str, list[str]]:
    """Every categorical covariate's levels: as given, else the sheet's values sorted (the first is the reference)."""
    out = {}
    for name, levels in categorical.items():
        if name not in table.columns:
            raise SubjectsSheetError(f"categorical covariate column {name} not in the sheet", path=sheet)
        values = sorted(set(table[name].dropna().astype(str)))
        levels = list(levels) if levels else values
        stray = sorted(set(values) - set(levels))
        if stray or len(levels) < 2:
            raise SubjectsSheetError(f"{name} has value(s) {', '.join(stray) or 'of one level only'} outside the levels "
                                     f"{', '.join(levels)}", path=sheet)
        out[name] = levels
    return out


def _overrides(layout: StudyLayout, sheet: pd.DataFrame, categorical: dict[str, list[str]],
               sheet_path: Path) -> dict[str, Any]:
    """The settings the user's files decide."""
    has = set(sheet.columns)
    dummies = [f"{name}_{level}" for name, levels in categorical.items() for level in levels[1:]]
    return {
        "results": layout.results or f"results/{layout.out.name}",
        "subjects": os.path.abspath(sheet_path),  # the workflow runs from the repository, not from here
        "pet_source": "dicom" if "pet_dicom" in has and "pet" not in has else "nifti",
        "training_cohort": layout.training_cohort,
        "segmentation.exclude_organs": "organs" in has,
        "unet.organs": "organs" in has,
        "unet.use_ct": "ct" in has or "ct_dicom" in has,
        "deep_features.use_ct": "ct" in has or "ct_dicom" in has,
        "covariates": list(layout.covariates),
        "categorical_covariates": categorical,
        "model.features": [*IMAGING_FEATURES, *layout.covariates, *dummies],
        "model.log_features": ["total_mtv_ml", "total_tlg", "dissemination_mm"],
        "model.harmonize": sheet["center"].nunique() > 1,
    }


def config_text(overrides: Mapping[str, Any], schema_path: Path = SCHEMA) -> str:
    """A config with every schema setting written out: its value (``overrides`` by dotted key, else
    the default), the schema's description as a comment; settings without a default commented out."""
    if not schema_path.is_file():
        raise InputError("config schema not found (init runs from a checkout of the repository)", path=schema_path)
    schema = yaml.safe_load(schema_path.read_text())
    lines = ["# Study configuration written by `biomarkers init`; every setting of",
             "# workflow/schemas/config.schema.yaml with its default unless the files decided otherwise.", ""]
    _write_properties(schema, "", 0, overrides, lines)
    return "\n".join(lines) + "\n"


def _write_properties(schema: dict, prefix: str, depth: int, overrides: Mapping[str, Any], lines: list[str]) -> None:
    indent = "  " * depth
    for key, spec in schema.get("properties", {}).items():
        if key == "simulate" or not isinstance(spec, dict):
            continue
        dotted = f"{prefix}{key}"
        description = " ".join(str(spec.get("description", "")).split())
        if description:
            lines += [f"{indent}# {line}" for line in textwrap.wrap(description, 96 - len(indent))]
        if spec.get("type") == "object" and "properties" in spec:
            lines.append(f"{indent}{key}:")
            _write_properties(spec, f"{dotted}.", depth + 1, overrides, lines)
            lines += [""] if depth == 0 else []
            continue
        if dotted in overrides:
            lines.append(f"{indent}{key}: {_flow(overrides[dotted])}")
        elif "default" in spec:
            lines.append(f"{indent}{key}: {_flow(spec['default'])}")
        else:
            lines.append(f"{indent}# {key}:   (no default; optional)")
        if depth == 0:
            lines.append("")


def _flow(value: Any) -> str:
    """A YAML flow value on one line."""
    if value is None:
        return "null"
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_./-]+", value) and value not in ("true", "false", "null"):
        return value
    return json.dumps(value)
