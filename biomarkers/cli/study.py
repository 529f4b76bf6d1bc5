"""The verbs around a study: ``init`` (a study folder from a user's files), ``signature`` (freeze
the primary model with every per-patient step) and ``predict`` (new patients from images through
it). Registered on the ``biomarkers`` app by :mod:`biomarkers.cli`; argument parsing and library
calls only."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from biomarkers.cli.args import key_values as _pairs
from biomarkers.cli.args import split_list as _split


def init(sheet: Path = typer.Option(..., help="Clinical sheet (CSV or TSV), one row per patient."),
         out: Path = typer.Option(..., help="Study folder to write (subjects.tsv, config.yaml), e.g. cohorts/mystudy."),
         map: str = typer.Option("", "--map", help="Column renaming OLD=NEW,... onto subject_id, center, time, "
                                                  "event (and cohort, covariates)."),
         pet: str = typer.Option("", help="Pattern of each SUV image (NIfTI/NRRD), e.g. 'images/{subject_id}_pet.nrrd'."),
         pet_dicom: str = typer.Option("", help="Pattern of each PET DICOM series folder, e.g. 'dicom/{subject_id}/PET'."),
         ct: str = typer.Option("", help="Pattern of each CT image on the PET grid."),
         ct_dicom: str = typer.Option("", help="Pattern of each CT DICOM series folder (resampled onto the PET grid)."),
         mask: str = typer.Option("", help="Pattern of each reference lesion mask: label image, RTSTRUCT or DICOM-SEG."),
         organs: str = typer.Option("", help="Pattern of each organ label image (1 brain, 2 liver, 3 kidneys, 4 bladder, 5 heart)."),
         root: Optional[Path] = typer.Option(None, help="Folder the patterns start from (default: the sheet's)."),
         validation_centers: str = typer.Option("", help="Comma-separated centres forming the validation cohort "
                                                        "(when the sheet has no cohort column)."),
         training_cohort: str = typer.Option("train", help="Name of the training cohort."),
         covariates: str = typer.Option("", help="Comma-separated numeric covariate columns."),
         categorical: List[str] = typer.Option([], help="Categorical covariate NAME or NAME=REF,LEVEL2,...; repeatable."),
         results: Optional[str] = typer.Option(None, help="Results folder of the study (default results/<out name>)."),
         force: bool = typer.Option(False, help="Overwrite the study folder's subjects.tsv and config.yaml.")) -> None:
    """Write a study folder (subjects sheet and a config with every default) from your own files."""
    from biomarkers.io.study_init import StudyLayout, init_study, parse_mapping

    patterns = {k: v for k, v in {"pet": pet, "pet_dicom": pet_dicom, "ct": ct, "ct_dicom": ct_dicom,
                                  "mask": mask, "organs": organs}.items() if v}
    cats = {}
    for item in categorical:
        name, _, levels = item.partition("=")
        cats[name.strip()] = _split(levels) or None
    layout = StudyLayout(sheet, out, parse_mapping(map), patterns, root, _split(validation_centers),
                         training_cohort, _split(covariates), cats, results)
    sheet_path, config_path = init_study(layout, force)
    import pandas as pd

    counts = pd.read_csv(sheet_path, sep="\t", dtype=str)["cohort"].value_counts().sort_index()
    typer.echo(f"{sum(counts)} patients ({', '.join(f'{c}: {n}' for c, n in counts.items())})"
               + ("" if organs else "; no organ masks, so segmentation.exclude_organs is false"))
    typer.echo(f"wrote {sheet_path} and {config_path}; run the study from the repository: "
               f"snakemake --cores 2 --configfile {config_path.resolve()}")


def image_sheet(subjects: Path = typer.Option(..., help="Subjects sheet."),
                out: Path = typer.Option(..., help="Sheet to write (TSV)."),
                column: List[str] = typer.Option([], help="COLUMN=PATTERN with {subject}: the converted image of "
                                                          "every subject; repeatable.")) -> None:
    """A copy of the subjects sheet naming converted images (SUV, CT, masks from DICOM)."""
    from biomarkers.io.subjects import write_image_sheet

    sheet = write_image_sheet(subjects, out, _pairs(column, "--column"))
    typer.echo(f"{out}: {len(sheet)} subjects")


def signature(model: Path = typer.Option(..., help="The primary model's frozen folder (`fit`)."),
              out: Path = typer.Option(..., help="Signature folder to write."),
              params: Path = typer.Option(..., help="The study's pyradiomics parameter file."),
              training_scores: Path = typer.Option(..., help="The model's scores of the training cohort."),
              cohort_table: List[Path] = typer.Option([], help="Feature table of another scored cohort (its "
                                                               "unseen centres' ComBat estimates); repeatable."),
              unet: Optional[Path] = typer.Option(None, help="U-Net checkpoint (lesions or organs from it)."),
              autoencoder: Optional[Path] = typer.Option(None, help="Autoencoder (when the model reads deep features)."),
              suv_norm: str = typer.Option("bw", help="SUV normalisation of DICOM input."),
              method: str = typer.Option("relative", help="Segmentation method."),
              threshold: float = typer.Option(2.5, help="Segmentation SUV threshold."),
              fraction: float = typer.Option(0.41, help="Fraction of SUVmax (relative methods)."),
              min_volume_ml: float = typer.Option(0.5, help="Smallest lesion kept (mL)."),
              organs: str = typer.Option("none", help="Organ masks of the threshold methods: given | unet | none."),
              lesions: str = typer.Option("pipeline", help="Lesions the model's features describe: pipeline | unet."),
              unet_probability: float = typer.Option(0.5, help="U-Net lesion probability threshold."),
              unet_tta: bool = typer.Option(False, help="U-Net left-right test-time mirroring."),
              unet_ct: bool = typer.Option(True, help="The U-Net reads the CT."),
              unet_organs: bool = typer.Option(False, help="The U-Net is organ-aware."),
              deep_ct: bool = typer.Option(True, help="The autoencoder reads the CT."),
              texture: str = typer.Option("largest", help="Texture aggregation rule."),
              covariates: str = typer.Option("", help="Comma-separated numeric covariates."),
              categorical: List[str] = typer.Option([], help="NAME=LEVEL1,LEVEL2; repeatable.")) -> None:
    """Freeze a model with every per-patient step of the study into one signature folder."""
    from biomarkers.signature.export import SignatureSettings, export_signature

    cats = {name: _split(levels) for name, levels in _pairs(categorical, "--categorical").items()}
    settings = SignatureSettings(suv_norm, method, threshold, fraction, min_volume_ml, organs, lesions,
                                 unet_probability, unet_tta, unet_ct, unet_organs, deep_ct, texture,
                                 _split(covariates), cats)
    digest = export_signature(out, model, settings, params, training_scores, cohort_table, unet, autoencoder)
    typer.echo(f"{out}: signature SHA-256 {digest}")


def predict(signature: Path = typer.Option(..., help="Signature folder (the study's results/<study>/signature)."),
            out: Path = typer.Option(..., help="Folder to write: predictions, stratification table, summaries."),
            subjects: Optional[Path] = typer.Option(None, help="Sheet of new patients (CSV/TSV: subject_id, center, "
                                                               "pet or pet_dicom, ct, organs, mask, covariates)."),
            pet: Optional[Path] = typer.Option(None, help="One patient: SUV image (or --pet-dicom)."),
            pet_dicom: Optional[Path] = typer.Option(None, help="One patient: PET DICOM series folder."),
            ct: Optional[Path] = typer.Option(None, help="One patient: CT on the PET grid."),
            ct_dicom: Optional[Path] = typer.Option(None, help="One patient: CT DICOM series folder."),
            organs: Optional[Path] = typer.Option(None, help="One patient: organ label image."),
            mask: Optional[Path] = typer.Option(None, help="One patient: reference lesion mask."),
            subject_id: str = typer.Option("", help="One patient: ID."),
            center: str = typer.Option("", help="One patient: centre (a training or reference centre)."),
            covariate: List[str] = typer.Option([], help="One patient: NAME=VALUE of a covariate; repeatable."),
            expect_sha256: Optional[str] = typer.Option(None, help="Refuse any signature but this one."),
            summary: str = typer.Option("png", help="Per-patient one-page summary: png | pdf | none.")) -> None:
    """Risk, risk group, uncertainty and abstention of new patients, from their images."""
    import pandas as pd

    from biomarkers.io.atomic import write_tsv
    from biomarkers.signature.predict import Signature, predict_patients, read_patients, stratification_table
    from biomarkers.survival.bundle import write_scores

    if summary not in ("png", "pdf", "none"):
        raise ValueError(f"--summary must be png, pdf or none, not {summary!r}")
    if subjects is not None:
        if pet or pet_dicom or subject_id:
            raise ValueError("give either --subjects or one patient's --pet/--pet-dicom and --subject-id")
        patients, where = read_patients(subjects), str(subjects)
    else:
        if not subject_id or not center or (pet is None) == (pet_dicom is None):
            raise ValueError("one patient needs --subject-id, --center and --pet or --pet-dicom (or give --subjects)")
        row = {"subject_id": subject_id, "center": center, "pet": pet, "pet_dicom": pet_dicom, "ct": ct,
               "ct_dicom": ct_dicom,
               "organs": organs, "mask": mask, **_pairs(covariate, "--covariate")}
        patients = pd.DataFrame([{k: (None if v is None else str(v)) for k, v in row.items()}])
        where = "command line"
    sig = Signature.load(signature, expect_sha256)
    changed = sig.version_differences()
    if changed:
        typer.echo(f"biomarkers predict: warning: libraries differ from the signature's ({'; '.join(changed)}); "
                   "features and scores may differ from the study's", err=True)
    scores, bundle, images = predict_patients(sig, patients, out / "work", where)
    write_scores(scores, out / "predictions.parquet", bundle)
    write_tsv(scores, out / "predictions.tsv", float_format="%.17g")
    write_tsv(stratification_table(scores, sig.sha256), out / "stratification.tsv", float_format="%.17g")
    if summary != "none":
        from biomarkers.report.patient_summary import patient_summary

        for record in scores.to_dict("records"):
            image, lesions = images[str(record["subject_id"])]
            patient_summary(image, lesions, record, sig.state["training_risk"], bundle.risk_cutoff,
                            out / "summaries" / f"{record['subject_id']}.{summary}", bundle.model, sig.sha256)
    groups = scores["risk_group"].value_counts().to_dict()
    typer.echo(f"{len(scores)} patient(s): {groups.get('high', 0)} high, {groups.get('low', 0)} low risk, "
               f"{int(scores['abstain'].sum())} abstained; signature {sig.sha256[:12]}; {out / 'stratification.tsv'}")
