"""New patients through a frozen signature: images in, risk, risk group, uncertainty and the
abstention flag out, by the same library calls the study's workflow makes per subject.

Per patient (in ``work/<subject>/``): SUV from the DICOM series when given (the signature's
normalisation), the lesion segmentation (the signature's method; organ masks from the patient's
files or the signature's U-Net), the PET metrics and pyradiomics features with the signature's
parameter file, deep features when the model reads them, the per-patient aggregation; then the
frozen model scores every patient with the study's preprocessing and harmonisation reference.
The same images give the same risk as the study gave them, to the last bit (tested).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from biomarkers.errors import InputError, SubjectsSheetError
from biomarkers.signature.export import SignatureSettings, check_signature


@dataclass
class Signature:
    """A checked signature folder, loaded."""

    folder: Path
    state: dict
    sha256: str
    settings: SignatureSettings

    @classmethod
    def load(cls, folder: str | Path, expect_sha256: str | None = None) -> "Signature":
        state, digest = check_signature(folder, expect_sha256)
        return cls(Path(folder), state, digest, SignatureSettings(**state["settings"]).check())

    def version_differences(self) -> list[str]:
        """``package signature-version -> installed-version`` for every library that differs from
        the one the signature was exported with (features or scores may then differ)."""
        from biomarkers.survival.bundle import library_versions

        now = library_versions()
        return [f"{pkg} {was} -> {now.get(pkg, 'not installed')}" for pkg, was in sorted(self.state["versions"].items())
                if now.get(pkg) != was]

    def bundle(self):
        """The frozen model, its ComBat extended by the harmonisation reference."""
        from biomarkers.survival.bundle import load_bundle

        bundle = load_bundle(self.folder / "model", self.state["model_sha256"])
        combat = bundle.preprocessor.combat_
        if combat is not None and self.state["harmonisation_reference"]:
            bundle.preprocessor.combat_ = combat.with_centres(self.state["harmonisation_reference"])
        return bundle


def read_patients(path: str | Path) -> pd.DataFrame:
    """A sheet of new patients (CSV or TSV): ``subject_id``, ``center``, ``pet`` (SUV image) or
    ``pet_dicom`` (a DICOM series folder), optional ``ct`` or ``ct_dicom``, ``organs``, ``mask``
    (label image, RTSTRUCT or DICOM-SEG), the covariates; no outcome needed."""
    from biomarkers.io.subjects import read_subjects

    sheet = read_subjects(path, required=("subject_id", "center"))
    if "pet" not in sheet.columns and "pet_dicom" not in sheet.columns:
        raise SubjectsSheetError("sheet of new patients needs a pet or a pet_dicom column", path=path)
    return sheet


def predict_patients(signature: Signature, patients: pd.DataFrame, work: str | Path,
                     sheet_path: str = "patients",
                     progress: bool = True) -> tuple[pd.DataFrame, Any, dict[str, tuple[Path, Path]]]:
    """Scores of every patient (``score``'s layout, plus ``center``, ``lesion_count``,
    ``total_mtv_ml`` and ``risk_percentile`` against the training cohort), the model bundle, and
    each patient's SUV image and lesion mask by subject ID; per-patient files in ``work``.

    Raises
    ------
    InputError
        A missing image, a patient without a file the signature needs (organ masks, CT, the
        reference mask), a centre ComBat cannot harmonise; the message names the patient.
    """
    from tqdm import tqdm

    from biomarkers.features.aggregate import feature_table
    from biomarkers.survival.bundle import score_table

    bundle = signature.bundle()
    _check_centres(bundle, patients, sheet_path)
    work = Path(work)
    frames, images = [], {}
    for _, row in tqdm(list(patients.iterrows()), desc="predict", unit="patient", disable=None if progress else True):
        sid = str(row["subject_id"])
        table, images[sid] = _lesion_table(signature, row, work / sid)
        frames.append(table)
    lesions = pd.concat([f for f in frames if len(f)] or frames, ignore_index=True)
    s = signature.settings
    table = feature_table(patients, lesions, s.covariates, s.categorical, sheet_path, s.texture)
    for column in bundle.info["feature_columns"]:  # per-lesion columns no lesion of these patients had
        if column not in table.columns:
            table[column] = np.nan
    scores = score_table(bundle, table, sheet_path)
    training = np.asarray(signature.state["training_risk"], dtype=np.float64)
    scores.insert(1, "center", table["center"].to_numpy())
    scores["lesion_count"] = table["lesion_count"].to_numpy()
    scores["total_mtv_ml"] = table["total_mtv_ml"].to_numpy()
    scores["risk_percentile"] = [100.0 * np.mean(training < r) for r in scores["risk"]]
    return scores, bundle, images


def stratification_table(scores: pd.DataFrame, signature_sha256: str) -> pd.DataFrame:
    """One row per patient for randomisation: the stratum (``high``/``low`` risk group, or
    ``review`` where the model abstains: send the patient to further tests) and the signature's hash."""
    stratum = np.where(scores["abstain"].to_numpy(bool), "review", scores["risk_group"].to_numpy())
    return pd.DataFrame({"subject_id": scores["subject_id"], "center": scores["center"],
                         "stratum": stratum, "risk_group": scores["risk_group"], "abstain": scores["abstain"],
                         "risk": scores["risk"], "signature_sha256": signature_sha256})


def _check_centres(bundle, patients: pd.DataFrame, sheet_path: str) -> None:
    """A centre neither in training nor in the harmonisation reference must bring enough patients."""
    combat = bundle.preprocessor.combat_
    if combat is None:
        return
    known = set(combat.batches_)
    counts = patients["center"].astype(str).value_counts()
    need = max(combat.min_batch_size, 2)
    for centre, n in sorted(counts.items()):
        if centre not in known and n < need:
            sid = patients.loc[patients["center"].astype(str) == centre, "subject_id"].iloc[0]
            raise SubjectsSheetError(
                f"centre {centre} is neither a training centre nor in the signature's harmonisation reference "
                f"({', '.join(sorted(known))}) and has {n} patient(s); ComBat estimates a new centre from at "
                f"least {need}: predict them together with more patients of that centre", sid, sheet_path)


def _file(row: pd.Series, column: str) -> Path | None:
    value = row.get(column)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else Path(value)


def _needed(row: pd.Series, column: str, why: str) -> Path:
    path = _file(row, column)
    if path is None:
        raise InputError(f"no {column} file given; the signature needs it ({why})", str(row["subject_id"]))
    if not path.exists():
        raise InputError(f"{column} file does not exist", str(row["subject_id"]), path)
    return path


def _lesion_table(signature: Signature, row: pd.Series, work: Path) -> tuple[pd.DataFrame, tuple[Path, Path]]:
    """One patient's lesion rows (PET metrics, texture, deep features when the model reads them),
    and the SUV image and lesion mask they come from."""
    from biomarkers.features.lesions import lesion_features
    from biomarkers.io.atomic import write_parquet
    from biomarkers.segment.run import SegmentSettings, segment_subject

    s, sid = signature.settings, str(row["subject_id"])
    work.mkdir(parents=True, exist_ok=True)
    pet = _pet(row, s, work)
    ct = _ct(row, pet, work)
    if ct is None and (s.lesions == "unet" or s.organs == "unet") and s.unet_ct:
        _needed(row, "ct", "the U-Net reads the CT")
    unet = SegmentSettings("unet", min_volume_ml=s.min_volume_ml, model=signature.folder / "unet.pt",
                           probability=s.unet_probability, tta=s.unet_tta)
    organs = _file(row, "organs")
    if s.lesions == "unet" or s.organs == "unet":
        organs_out = work / "unet_organs.nii.gz" if s.unet_organs else None
        segment_subject(pet, work / "unet_lesions.nii.gz", unet, ct=ct if s.unet_ct else None,
                        organs_out=organs_out, subject_id=sid)
        if s.organs == "unet":
            organs = organs_out
    if s.lesions == "unet":
        lesions = work / "unet_lesions.nii.gz"
    else:
        lesions = work / "lesions.nii.gz"
        settings = SegmentSettings(s.method, s.threshold, s.fraction, s.min_volume_ml)
        if s.method == "reference":
            segment_subject(pet, lesions, settings, reference=_mask(row, pet, work), check_organs=organs,
                            subject_id=sid)
        else:
            if s.organs == "given":
                organs = _needed(row, "organs", "the study excluded physiological uptake with organ masks")
            segment_subject(pet, lesions, settings, organs=organs if s.organs != "none" else None, subject_id=sid)
    table, meta = lesion_features(pet, lesions, sid, signature.folder / "radiomics.yaml")
    write_parquet(table, work / "lesions.parquet", meta)
    if signature.state.get("autoencoder"):
        from biomarkers.features.embed_run import embed_to_parquet

        deep_ct = (ct or _needed(row, "ct", "the deep features read the CT")) if s.deep_ct else None
        more = embed_to_parquet(pet, deep_ct, lesions, sid, signature.folder / "autoencoder.pt",
                                work / "deep.parquet", "cpu")
        table = table.merge(more.drop(columns="subject_id"), on="lesion_id", how="left", validate="one_to_one")
    return table, (pet, lesions)


def _pet(row: pd.Series, s: SignatureSettings, work: Path) -> Path:
    """The patient's SUV image: the sheet's, or converted from its DICOM series."""
    sid = str(row["subject_id"])
    dicom = _file(row, "pet_dicom")
    if dicom is not None:
        from biomarkers.imaging.suv import convert_dicom_to_suv

        if not dicom.exists():
            raise InputError("pet_dicom folder does not exist", sid, dicom)
        out = work / "suv.nii.gz"
        convert_dicom_to_suv(dicom, out, s.suv_normalisation)
        return out
    return _needed(row, "pet", "the SUV image")


def _ct(row: pd.Series, pet: Path, work: Path) -> Path | None:
    """The patient's CT on the PET grid: the sheet's, or resampled from its DICOM series as the
    workflow does (`biomarkers resample --interpolation linear --outside -1024`)."""
    if _file(row, "ct") is not None:
        return _needed(row, "ct", "the CT")
    dicom = _file(row, "ct_dicom")
    if dicom is None:
        return None
    from biomarkers.imaging.resample import resample_to
    from biomarkers.io.dicom import read_dicom_image
    from biomarkers.io.images import read_image, write_image

    sid = str(row["subject_id"])
    if not dicom.exists():
        raise InputError("ct_dicom folder does not exist", sid, dicom)
    out = work / "ct.nii.gz"
    try:
        moved = resample_to(read_dicom_image(dicom, "CT"), read_image(pet, sid), "linear", -1024.0)
    except ValueError as exc:
        raise InputError(str(exc), sid, dicom) from None
    write_image(moved, out)
    return out


def _mask(row: pd.Series, pet: Path, work: Path) -> Path:
    """The patient's reference lesion mask: a label image, or an RTSTRUCT / DICOM-SEG brought onto
    the PET grid as the workflow does (`biomarkers mask`)."""
    from biomarkers.imaging.masks import LABEL_IMAGE_SUFFIXES, read_mask

    path = _needed(row, "mask", "segmentation: reference")
    if path.name.lower().endswith(LABEL_IMAGE_SUFFIXES):
        return path
    from biomarkers.io.images import read_image, write_image

    sid = str(row["subject_id"])
    out = work / "mask.nii.gz"
    write_image(read_mask(path, read_image(pet, sid), sid, reference_path=pet), out)
    return out
