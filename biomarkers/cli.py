"""The ``biomarkers`` command: argument parsing and calls into the library, nothing else.

Heavy libraries are imported inside each verb so that every call starts quickly.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer

from biomarkers import cli_args
from biomarkers.cli_args import pipeline_options
from biomarkers.cli_args import key_values as _key_values
from biomarkers.cli_args import split_list as _split
from biomarkers.errors import BiomarkerError, FeatureTableError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Reproducible PET/CT radiomics and survival biomarker pipeline.")


def user_errors(func: Callable) -> Callable:
    """Turn library errors into a one-line message on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (BiomarkerError, ValueError) as exc:
            typer.echo(f"biomarkers {func.__name__.replace('_', '-')}: error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper


# Options shared by `fit` and `cv`.
_TRAINING_COHORT = typer.Option("train", help="Cohort the table must be of (its metadata, from `aggregate`): "
                                               "a validation cohort's table is refused.")
# Preprocessing options shared by `fit`, `cv` and `uncertainty-scores`.
_HARMONIZE, _NOT_HARMONIZED = cli_args.HARMONIZE, cli_args.NOT_HARMONIZED
_CORR_THRESHOLD, _FDR_Q, _MAX_FEATURES = cli_args.CORR_THRESHOLD, cli_args.FDR_Q, cli_args.MAX_FEATURES
_THREADS = cli_args.THREADS
_torch_threads = cli_args.torch_threads


@app.command()
@user_errors
def simulate(out: Path = typer.Option(..., help="Output folder of the cohort."),
             subjects: int = typer.Option(150, help="Number of subjects."),
             centers: int = typer.Option(3, help="Number of centres (scanners)."),
             validation_centers: int = typer.Option(1, help="How many of the last centres form the validation cohort."),
             seed: int = typer.Option(0, help="Random seed; the same seed gives byte-identical files."),
             threads: int = typer.Option(1, help="Worker processes (results do not depend on it)."),
             dicom: bool = typer.Option(False, help="Also write each PET as a DICOM series (column pet_dicom)."),
             shifted: int = typer.Option(0, help="Subjects added to the last centre that a model should not trust "
                                                 "(unlike scanner, bulky or faint lesions; truth.tsv names them).")) -> None:
    """Write a synthetic multi-centre PET/CT cohort with ground-truth survival."""
    from biomarkers.simulate import simulate_cohort

    sheet = simulate_cohort(out, n_subjects=subjects, n_centers=centers, seed=seed,
                            validation_centers=validation_centers, threads=threads, progress=True, shifted=shifted,
                            **({"dicom": True} if dicom else {}))
    typer.echo(f"wrote {sheet}")


@app.command()
@user_errors
def suv(dicom_dir: Path = typer.Argument(..., help="Folder holding one PET DICOM series (searched recursively)."),
        out: Path = typer.Option(..., help="SUV image to write (NIfTI); a JSON sidecar is written beside it."),
        norm: str = typer.Option("bw", help="Normalisation: bw | lbm (James) | lbm-janma (Janmahasatian) | bsa | ibw.")) -> None:
    """DICOM PET series -> SUV volume, with the tags used recorded in a sidecar."""
    from biomarkers.imaging.suv import convert_dicom_to_suv

    sidecar = convert_dicom_to_suv(dicom_dir, out, norm)
    typer.echo(f"{out}: SUV{norm} from {sidecar.get('n_slices', '?')} slices")


@app.command()
@user_errors
def mask(source: Path = typer.Argument(..., help="Label image (NIfTI/NRRD), DICOM-SEG or RTSTRUCT file, or a folder with one."),
         reference: Path = typer.Option(..., help="Image whose grid the mask is brought onto (usually the SUV PET)."),
         out: Path = typer.Option(..., help="Label image (NIfTI) to write: labels 1..n, 0 background."),
         roi: List[str] = typer.Option([], help="RTSTRUCT ROI or DICOM-SEG segment to keep, in label order; repeatable."),
         resample: bool = typer.Option(False, help="Resample a label image on another grid (nearest neighbour) instead of refusing it."),
         subject_id: str = typer.Option("", help="Subject ID for messages.")) -> None:
    """Any reference mask format -> a label image on the PET grid."""
    from biomarkers.io.images import read_image, write_image
    from biomarkers.imaging.masks import read_mask

    sid = subject_id or None
    labels = read_mask(source, read_image(reference, sid), sid, resample=resample, roi_names=roi or None,
                       reference_path=reference)
    write_image(labels, out)


@app.command()
@user_errors
def resample(image: Path = typer.Argument(..., help="Image to move (e.g. the CT), or a folder with its DICOM series."),
             reference: Path = typer.Option(..., help="Image whose grid is taken (e.g. the PET)."),
             out: Path = typer.Option(..., help="Resampled image to write."),
             interpolation: str = typer.Option("linear", help="linear | nearest | bspline (nearest for labels)."),
             outside: float = typer.Option(..., help="Value where the grid lies outside the moved image: -1024 for CT (air), 0 for PET."),
             modality: str = typer.Option("CT", help="A DICOM folder's series to read (Modality: CT, PT, MR)."),
             subject_id: str = typer.Option("", help="Subject ID for messages.")) -> None:
    """Resample an image onto another's grid (CT onto PET, or PET onto CT); a DICOM series is read first."""
    from biomarkers.imaging.resample import resample_to
    from biomarkers.io.images import read_image, write_image

    sid = subject_id or None
    if image.is_dir():
        from biomarkers.io.dicom import read_dicom_image

        try:
            moving = read_dicom_image(image, modality.upper())
        except InputError as exc:
            raise InputError(str(exc), sid) from None
    else:
        moving = read_image(image, sid)
    try:
        moved = resample_to(moving, read_image(reference, sid), interpolation, outside)
    except ValueError as exc:
        raise InputError(str(exc), None, image) from None
    write_image(moved, out)


@app.command()
@user_errors
def segment(pet: Path = typer.Option(..., help="SUV image."),
            out: Path = typer.Option(..., help="Labelled lesion mask to write."),
            method: str = typer.Option("relative", help="fixed | relative | relative-maxima | percist | unet | reference"),
            model: Optional[Path] = typer.Option(None, help="unet: the checkpoint written by `train-unet`."),
            ct: Optional[Path] = typer.Option(None, help="unet: CT on the PET grid (when the model was trained with CT)."),
            probability: float = typer.Option(0.5, help="unet: lesion probability threshold."),
            organs_out: Optional[Path] = typer.Option(None, help="unet: also write the predicted organ label image "
                                                                 "(an organ-aware network)."),
            tta: bool = typer.Option(False, help="unet: average with the left-right mirrored prediction."),
            reference: Optional[Path] = typer.Option(None, help="reference: the expert lesion mask (label image, "
                                                                "DICOM-SEG or RTSTRUCT)."),
            threshold: float = typer.Option(2.5, help="SUV threshold (fixed) or candidate/seed threshold (relative methods)."),
            fraction: float = typer.Option(0.41, help="Fraction of each region's or seed's SUVmax (relative methods)."),
            seed_radius_mm: float = typer.Option(6.0, help="relative-maxima: a seed is the hottest voxel within this radius."),
            liver_label: int = typer.Option(2, help="percist: the liver's label in --organs."),
            min_volume_ml: float = typer.Option(0.5, help="Smallest lesion kept, in mL."),
            organs: Optional[Path] = typer.Option(None, help="Organ label image of physiological uptake to exclude."),
            check_organs: Optional[Path] = typer.Option(None, help="Organ label image the plausibility check "
                                                                   "measures the lesions against (default --organs)."),
            max_total_ml: float = typer.Option(1000.0, help="Warn when the lesions add up to more than this (mL)."),
            subject_id: str = typer.Option("", help="Subject ID for messages.")) -> None:
    """Lesion segmentation (threshold family, 3D U-Net or the reference mask): a labelled lesion mask
    (1..n, 0 background). Warns when the lesions lie in organs or add up to an implausible volume."""
    from biomarkers.segment.run import SegmentSettings, segment_subject

    sid = subject_id or None
    settings = SegmentSettings(method, threshold, fraction, min_volume_ml, seed_radius_mm, liver_label, model,
                               probability, tta, max_total_ml)
    n_lesions, check = segment_subject(pet, out, settings, ct=ct, organs=organs, reference=reference,
                                       check_organs=check_organs, organs_out=organs_out, subject_id=sid)
    if check.flagged:
        typer.echo(f"biomarkers segment: warning: {'subject ' + sid + ', ' if sid else ''}file {out}: "
                   f"{'; '.join(check.reasons)}: check the segmentation (organ masks, method)", err=True)
    typer.echo(f"{subject_id or pet.name}: {n_lesions} lesion(s), {check.total_ml:.1f} mL")


@app.command("train-unet")
@user_errors
def train_unet(subjects: Path = typer.Option(..., help="Subjects sheet with pet, ct and mask (reference) columns."),
               cohort: str = typer.Option(..., help="Cohort whose reference masks train the network."),
               out: Path = typer.Option(..., help="Checkpoint to write."),
               epochs: int = typer.Option(5, help="Epochs."),
               patches_per_epoch: int = typer.Option(64, help="Patches sampled per epoch (half centred on lesions)."),
               batch_size: int = typer.Option(2, help="Patches per optimisation step."),
               base_channels: int = typer.Option(8, help="Channels of the first level (doubled per level)."),
               patch: int = typer.Option(48, help="Patch edge in voxels."),
               use_ct: bool = typer.Option(True, help="Two channels (PET and CT); --no-use-ct for PET alone."),
               use_organs: Optional[bool] = typer.Option(None, help="Learn the sheet's organ masks too (organ-aware "
                                                                    "network); default: when the sheet has organs."),
               spacing_mm: float = typer.Option(4.0, help="Isotropic voxel spacing the network works at (images "
                                                          "are resampled to it); 0: each image's own grid."),
               lr: float = typer.Option(1e-3, help="AdamW learning rate."),
               lesion_fraction: float = typer.Option(0.5, help="Share of patches centred on a lesion voxel."),
               hot_fraction: float = typer.Option(0.0, help="Share of the other patches centred on hot (SUV >= 2.5) "
                                                            "non-lesion voxels: physiological uptake as hard negatives."),
               organ_fraction: float = typer.Option(0.0, help="Organ-aware network: share of the other patches "
                                                              "centred on an organ, each organ equally often."),
               blur_fwhm_mm: float = typer.Option(0.0, help="Resolution augmentation: half the patches get their PET "
                                                            "blurred by a Gaussian of FWHM up to this (mm) per axis, "
                                                            "for centres with coarser scanners; 0: none."),
               threads: int = _THREADS,
               seed: int = typer.Option(0, help="Seed of weights, patches and augmentation."),
               device: str = typer.Option("auto", help="auto (CUDA when present) | cpu | cuda.")) -> None:
    """Train the 3D U-Net on a cohort's reference lesion masks (patches balanced lesion/background)."""
    from biomarkers.segment.unet_run import train_unet_from_sheet

    _torch_threads(threads)
    history = train_unet_from_sheet(subjects, cohort, out, epochs, patches_per_epoch, seed, use_ct,
                                    batch_size=batch_size, lr=lr, device=device, patch_size=(patch, patch, patch),
                                    base_channels=base_channels, lesion_fraction=lesion_fraction,
                                    hot_fraction=hot_fraction, use_organs=use_organs, organ_fraction=organ_fraction,
                                    spacing_mm=(spacing_mm,) * 3 if spacing_mm > 0 else None,
                                    blur_fwhm_mm=blur_fwhm_mm)
    typer.echo(f"trained {epochs} epoch(s); loss {history[0]:.4f} -> {history[-1]:.4f}; {out}")


@app.command("lesion-patches")
@user_errors
def lesion_patches(subjects: Path = typer.Option(..., help="Subjects sheet with pet (and ct) columns."),
                   cohort: str = typer.Option(..., help="Cohort whose subjects are read."),
                   masks: str = typer.Option(..., help="Folder of <subject>_lesions.nii.gz, or a pattern with {subject_id}."),
                   out: Path = typer.Option(..., help="Archive (.npz) to write."),
                   size_mm: float = typer.Option(64.0, help="Patch edge in mm."),
                   shape: int = typer.Option(16, help="Patch edge in voxels (a multiple of 8)."),
                   use_ct: bool = typer.Option(True, help="PET, CT and mask channels; --no-use-ct for PET and mask.")) -> None:
    """Every lesion's PET/CT patch of a cohort, grouped by subject (input of `fit --model cnn_survival`)."""
    from biomarkers.deep.crops import PatchSpec
    from biomarkers.deep.lesion_bags import bags_from_sheet, write_bags

    spec = PatchSpec((size_mm,) * 3, (shape,) * 3, ("pet", "ct", "mask") if use_ct else ("pet", "mask"))
    bags = bags_from_sheet(subjects, cohort, masks, spec)
    write_bags(bags, out)
    empty = len(set(bags.subjects) - set(bags.subject_id))
    typer.echo(f"{len(bags.patches)} lesion patch(es) of {len(bags.subjects)} subjects ({empty} without a lesion) -> {out}")


@app.command("train-autoencoder")
@user_errors
def train_autoencoder(subjects: Path = typer.Option(..., help="Subjects sheet with pet and ct columns."),
                      cohort: str = typer.Option(..., help="Cohort whose lesions train the autoencoder."),
                      masks: str = typer.Option(..., help="Folder of <subject>_lesions.nii.gz, or a pattern with {subject_id}."),
                      out: Path = typer.Option(..., help="Checkpoint to write."),
                      latent: int = typer.Option(32, help="Length of the feature vector."),
                      epochs: int = typer.Option(20, help="Epochs."),
                      use_ct: bool = typer.Option(True, help="PET and CT channels; --no-use-ct for PET alone."),
                      seed: int = typer.Option(0, help="Seed of weights, batches and augmentation."),
                      threads: int = _THREADS,
                      device: str = typer.Option("auto", help="auto | cpu | cuda.")) -> None:
    """Self-supervised 3D autoencoder on the lesion-centred patches of a cohort (for `embed`)."""
    from biomarkers.features.embed_run import train_autoencoder_from_sheet

    _torch_threads(threads)

    info = train_autoencoder_from_sheet(subjects, cohort, masks, out, latent, epochs, seed, use_ct=use_ct,
                                        device=device)
    loss = info["history"]["train_loss"]
    typer.echo(f"autoencoder trained on {info['n_patches']} lesion patches of {len(info['subjects'])} subjects; "
               f"reconstruction loss {loss[0]:.4f} -> {loss[-1]:.4f}; {out}")


@app.command()
@user_errors
def embed(image: Path = typer.Option(..., help="SUV image."),
          mask: Path = typer.Option(..., help="Lesion label image on the same grid."),
          model: Path = typer.Option(..., help="Encoder: `train-autoencoder` or `train-unet` checkpoint, or TorchScript."),
          out: Path = typer.Option(..., help="lesions.parquet to write: deep_* columns, one row per lesion."),
          ct: Optional[Path] = typer.Option(None, help="CT on the PET grid (for encoders with a CT channel)."),
          subject_id: str = typer.Option("", help="Subject ID (default: the image file name without extension)."),
          device: str = typer.Option("auto", help="auto | cpu | cuda.")) -> None:
    """CNN-derived lesion features (deep_*), in the layout of `features`."""
    from biomarkers.features.embed_run import embed_to_parquet

    sid = subject_id or image.name.split(".")[0]
    table = embed_to_parquet(image, ct, mask, sid, model, out, device)
    typer.echo(f"{sid}: {len(table)} lesion(s), {sum(c.startswith('deep_') for c in table.columns)} deep features")


@app.command("segment-quality")
@user_errors
def segment_quality(subjects: Path = typer.Option(..., help="Subjects sheet with `mask` (reference) and `organs` columns."),
                    cohort: str = typer.Option(..., help="Cohort to score."),
                    method: List[str] = typer.Option(..., help="fixed:SUV, relative:FRACTION, relative-maxima:FRACTION or percist; repeatable."),
                    out: Path = typer.Option(..., help="Per-subject metrics (TSV)."),
                    summary: Optional[Path] = typer.Option(None, help="Per-method cohort summary (TSV)."),
                    plot: Optional[Path] = typer.Option(None, help="Box plots of Dice, FP and FN volume (PNG)."),
                    threshold: float = typer.Option(2.5, help="Candidate SUV threshold of the relative methods."),
                    min_volume_ml: float = typer.Option(0.5, help="Smallest lesion kept, in mL."),
                    exclude_organs: bool = typer.Option(True, help="Exclude physiological organ uptake."),
                    without_organs: bool = typer.Option(False, help="Also score each threshold method without the "
                                                                    "organ masks (named '<method> -organs')."),
                    predicted: List[str] = typer.Option([], help="NAME=PATTERN: another method's label images, "
                                                                 "{subject} in the path (e.g. the U-Net's); repeatable."),
                    predicted_organs: List[str] = typer.Option([], help="NAME=PATTERN: a method's organ label images; "
                                                                        "thresholds run with them too ('<method> "
                                                                        "+NAME-organs'); repeatable."),
                    organ_dice: Optional[Path] = typer.Option(None, help="Mean Dice per organ of --predicted-organs "
                                                                         "against the sheet's organs (TSV).")) -> None:
    """Score segmentation methods against reference masks (autoPET Dice, FP and FN volume)."""
    from biomarkers.io.atomic import write_tsv
    from biomarkers.segment.compare import compare_methods, organ_scores
    from biomarkers.segment.quality import summarise

    organ_patterns = _key_values(predicted_organs, "--predicted-organs NAME=PATTERN")
    cases = compare_methods(subjects, cohort, method, threshold, min_volume_ml, exclude_organs, progress=True,
                            predicted=_key_values(predicted, "--predicted NAME=PATTERN"),
                            without_organs=without_organs, predicted_organs=organ_patterns)
    if organ_dice is not None:
        import pandas as pd

        tables = [organ_scores(subjects, cohort, name, pattern) for name, pattern in organ_patterns.items()]
        per_case = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["method"])
        organ_table = per_case.drop(columns=["subject_id", "center"], errors="ignore").groupby("method").mean()
        organ_table.insert(0, "cases", per_case.groupby("method").size())
        organ_table.insert(0, "cohort", cohort)
        write_tsv(organ_table.reset_index(), organ_dice, float_format="%.4g")
    write_tsv(cases, out)
    table = summarise(cases)
    if summary is not None:
        table.insert(0, "cohort", cohort)
        write_tsv(table, summary, float_format="%.4g")
    if plot is not None:
        from biomarkers.report.plots import segmentation_quality_plot

        segmentation_quality_plot(cases, plot, f"Segmentation against the reference masks, {cohort} (n={cases['subject_id'].nunique()})")
    typer.echo(table.to_string(index=False))


@app.command()
@user_errors
def features(image: Path = typer.Option(..., help="SUV image."),
             mask: Path = typer.Option(..., help="Lesion label image on the same grid."),
             out: Path = typer.Option(..., help="lesions.parquet to write (one row per lesion)."),
             params: Optional[str] = typer.Option(None, help="pyradiomics parameter file, or a shipped one by name (pet, ct); PET metrics only without it."),
             subject_id: str = typer.Option("", help="Subject ID written to the table (default: the image file name without extension).")) -> None:
    """PET metrics and pyradiomics features, one row per lesion label."""
    from biomarkers.features.lesions import lesion_features
    from biomarkers.io.atomic import write_parquet

    sid = subject_id or image.name.split(".")[0]
    table, meta = lesion_features(image, mask, sid, params)
    write_parquet(table, out, meta)
    missing = meta.get("texture_missing", {})
    if missing:
        first = next(iter(missing.values()))
        typer.echo(f"biomarkers features: warning: subject {sid}, file {mask}: pyradiomics cannot use lesion "
                   f"label(s) {', '.join(missing)} ({first}); their PET metrics are kept, their texture is missing",
                   err=True)


@app.command()
@user_errors
def stability(image: Path = typer.Option(..., help="SUV image."),
              mask: Path = typer.Option(..., help="Lesion label image on the same grid."),
              out: Path = typer.Option(..., help="Long table (parquet) to write: one row per lesion and condition."),
              perturb: List[str] = typer.Option(..., help="erode | dilate | noise:CV | resolution:FWHM_MM:SXxSYxSZ; repeatable."),
              params: Optional[str] = typer.Option(None, help="pyradiomics parameter file, or a shipped one by name (pet, ct); PET metrics only without it."),
              source_fwhm: Optional[float] = typer.Option(None, help="PSF FWHM of the image in mm (needed by resolution perturbations)."),
              seed: int = typer.Option(0, help="Noise seed; with the subject ID it gives byte-identical tables."),
              subject_id: str = typer.Option("", help="Subject ID written to the table (default: the image file name without extension).")) -> None:
    """Lesion features of the image as it is and under each perturbation (for feature ICCs)."""
    from biomarkers.features.stability import perturbed_lesion_features
    from biomarkers.io.atomic import write_parquet

    sid = subject_id or image.name.split(".")[0]
    table, meta = perturbed_lesion_features(image, mask, sid, params, perturb, seed, source_fwhm)
    write_parquet(table, out, meta)
    typer.echo(f"{sid}: {table['lesion_id'].nunique()} lesion(s), {table['perturbation'].nunique()} condition(s)")


@app.command()
@user_errors
def icc(tables: List[Path] = typer.Argument(..., help="Tables written by `biomarkers stability` (one per subject)."),
        out: Path = typer.Option(..., help="ICC table (TSV) to write: one row per feature."),
        kind: str = typer.Option("ICC(1,1)", help="ICC(1,1) (one-way random) | ICC(2,1) (two-way random, agreement) | ICC(3,1) (two-way mixed, consistency)."),
        plot: Optional[Path] = typer.Option(None, help="Every feature's ICC on Koo & Li's bands (PNG).")) -> None:
    """Intra-class correlation of every feature over lesions and perturbations."""
    from biomarkers.features.icc import icc_table
    from biomarkers.features.stability import read_stability_tables
    from biomarkers.io.atomic import write_tsv

    table = icc_table(read_stability_tables(tables), kind=kind)
    write_tsv(table, out)
    n_complete, n_targets = table.attrs["n_complete"], table.attrs["n_targets"]
    if plot is not None:
        from biomarkers.report.plots import icc_plot

        icc_plot(table, plot, f"Feature stability: {kind} over {n_complete} lesions, {table['n_conditions'].iloc[0]} conditions")
    typer.echo(f"{kind} of {len(table)} features over {n_complete} of {n_targets} lesions "
               f"(those present under every condition)")


@app.command()
@user_errors
def aggregate(lesions: List[Path] = typer.Argument(..., help="lesions.parquet files of the cohort's subjects."),
              subjects: Path = typer.Option(..., help="Subjects sheet."),
              out: Path = typer.Option(..., help="Feature table (parquet) to write."),
              cohort: str = typer.Option(..., help="Cohort name (the sheet's `cohort` column)."),
              covariates: str = typer.Option("", help="Comma-separated numeric covariate columns."),
              categorical: List[str] = typer.Option([], help="NAME=LEVEL1,LEVEL2 (first level is the reference); repeatable."),
              texture: str = typer.Option("largest", help="Per-lesion features of several lesions: largest, hottest or weighted (MTV-weighted mean)."),
              extra: List[Path] = typer.Option([], help="Further per-lesion table of the same lesions (e.g. `embed`'s deep_* features); repeatable.")) -> None:
    """Per-subject aggregation: the feature table of one cohort."""
    from biomarkers.features.build import build_cohort_table

    cats = {}
    for item in categorical:
        name, _, levels = item.partition("=")
        if not levels:
            raise ValueError(f"--categorical expects NAME=LEVEL1,LEVEL2, got {item!r}")
        cats[name] = _split(levels)
    build_cohort_table(subjects, lesions, cohort, out, _split(covariates), cats, texture, extra)


@app.command()
@user_errors
def fit(features: Path = typer.Option(..., help="Training feature table."),
        model: str = typer.Option("coxph", help="coxph | coxnet | rsf | deepsurv | logistic_hazard | deephit | cnn_survival."),
        out: Path = typer.Option(..., help="Model directory to write."),
        include: str = typer.Option("", help="Comma-separated feature columns (default: all numeric)."),
        log_features: str = typer.Option("", help="Comma-separated features to log1p-transform."),
        penalizer: Optional[float] = typer.Option(None, help="coxph penalty strength (default 0.1)."),
        l1_ratio: Optional[float] = typer.Option(None, help="Elastic-net mixing, 0 = ridge, 1 = lasso (coxph, coxnet)."),
        set_: List[str] = typer.Option([], "--set", help="Hyperparameter KEY=VALUE (see `biomarkers models`); repeatable."),
        horizons: str = typer.Option("", help="Comma-separated times (days) at which survival is scored "
                                               "(default: quartiles of the training event times)."),
        abstain_quantile: float = typer.Option(0.9, help="Abstain where the uncertainty exceeds this quantile of "
                                                         "its training values (MC-dropout models)."),
        abstain_on: str = typer.Option("risk_flip", help="Uncertainty of the abstention: risk_flip (share of "
                                                         "MC samples in the other risk group), risk_sd or distance."),
        abstention: Optional[Path] = typer.Option(None, help="choice.json of `uncertainty-choice` for this model: "
                                                             "abstain on its chosen method (replaces --abstain-on)."),
        harmonize: bool = _HARMONIZE, not_harmonized: str = _NOT_HARMONIZED,
        corr_threshold: Optional[float] = _CORR_THRESHOLD, fdr_q: Optional[float] = _FDR_Q,
        max_features: Optional[int] = _MAX_FEATURES,
        plot: Optional[Path] = typer.Option(None, help="Model figure (PNG): coefficients, importance or loss curves."),
        patches: Optional[Path] = typer.Option(None, help="cnn_survival: the training cohort's lesion patches "
                                                          "(`biomarkers lesion-patches`)."),
        training_cohort: str = _TRAINING_COHORT,
        threads: int = _THREADS) -> None:
    """Fit a survival model on the training cohort and freeze it."""
    from biomarkers.io.provenance import sha256_file
    from biomarkers.io.atomic import read_json
    from biomarkers.survival.bundle import fit_bundle, read_feature_table, save_bundle

    _torch_threads(threads)
    params = _key_values(set_)
    table = read_feature_table(features, training_cohort=training_cohort)
    pipeline = pipeline_options(table, include, harmonize, not_harmonized, corr_threshold, fdr_q, max_features)
    bags = _read_bags(patches)
    choice = read_json(abstention, "uncertainty choice") if abstention is not None else None
    try:
        bundle, summary = fit_bundle(table, model, _split(include) or None, _split(log_features), penalizer,
                                     l1_ratio, sha256_file(features), params,
                                     [float(h) for h in _split(horizons)] or None, abstain_quantile, pipeline,
                                     abstain_on, bags, choice)
    except FeatureTableError as exc:
        if exc.path is not None:
            raise
        raise FeatureTableError(str(exc), path=features) from None
    save_bundle(bundle, summary, out)
    if plot is not None:
        from biomarkers.report.model_plots import model_plot

        model_plot(bundle, summary, table, plot, f"{model} (n={len(table)}, {bundle.info['n_events']} events)")
    typer.echo(f"fitted {model} on {len(table)} subjects ({bundle.info['n_events']} events) -> {out} "
               f"(bundle SHA-256 {bundle.sha256})")


def _read_bags(path: Optional[Path]):
    """The lesion patch archive of --patches, or None."""
    if path is None:
        return None
    from biomarkers.deep.lesion_bags import read_bags

    return read_bags(path)


@app.command()
@user_errors
def cv(features: Path = typer.Option(..., help="Training feature table."),
       model: List[str] = typer.Option(..., help="Candidate model; repeatable."),
       out: Path = typer.Option(..., help="Summary TSV to write: one row per model, best first."),
       include: str = typer.Option("", help="Comma-separated feature columns (default: all numeric)."),
       log_features: str = typer.Option("", help="Comma-separated features to log1p-transform."),
       set_: List[str] = typer.Option([], "--set", help="MODEL.KEY=VALUE hyperparameter; MODEL.kind=KIND, "
                                                         "MODEL.features=A,B and MODEL.log_features=A for a candidate "
                                                         "with its own model and features; repeatable."),
       folds: int = typer.Option(5, help="Outer folds."),
       repeats: int = typer.Option(1, help="Repetitions of the outer split."),
       seed: int = typer.Option(0, help="Seed of the outer split."),
       harmonize: bool = _HARMONIZE, not_harmonized: str = _NOT_HARMONIZED,
       corr_threshold: Optional[float] = _CORR_THRESHOLD, fdr_q: Optional[float] = _FDR_Q,
       max_features: Optional[int] = _MAX_FEATURES,
       folds_out: Optional[Path] = typer.Option(None, help="Also write every fold's held-out C-indices (TSV)."),
       patches: Optional[Path] = typer.Option(None, help="The training cohort's lesion patches, for cnn_survival "
                                                         "candidates (`biomarkers lesion-patches`)."),
       training_cohort: str = _TRAINING_COHORT,
       threads: int = _THREADS) -> None:
    """Nested cross-validation of candidate models on the training cohort (for model choice)."""
    _torch_threads(threads)
    from biomarkers.io.atomic import write_tsv
    from biomarkers.survival.bundle import read_feature_table
    from biomarkers.survival.crossval import cross_validate, summarise

    params: dict[str, dict[str, str]] = {name: {} for name in model}
    for key, value in _key_values(set_).items():
        name, dot, hyper = key.partition(".")
        if not dot or name not in params:
            raise ValueError(f"--set {key}=...: expected MODEL.KEY with MODEL one of {', '.join(params)}")
        params[name][hyper] = _split(value) if hyper in ("features", "log_features") else value
    table = read_feature_table(features, training_cohort=training_cohort)
    pipeline = pipeline_options(table, include, harmonize, not_harmonized, corr_threshold, fdr_q, max_features)
    per_fold = cross_validate(table, params, _split(include) or None, _split(log_features), folds, repeats, seed,
                              progress=True, pipeline=pipeline, bags=_read_bags(patches))
    summary = summarise(per_fold)
    if folds_out is not None:
        write_tsv(per_fold, folds_out, float_format="%.4g")
    write_tsv(summary, out, float_format="%.4g")
    typer.echo(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command()
def models() -> None:
    """The models `fit --model` offers and their hyperparameters with defaults."""
    from biomarkers.survival.models import DEFAULTS

    for name, params in DEFAULTS.items():
        typer.echo(f"{name}: " + ", ".join(f"{k}={v}" for k, v in params.items()))


@app.command()
@user_errors
def score(model: Path = typer.Option(..., help="Frozen model directory."),
          features: Path = typer.Option(..., help="Feature table of any cohort."),
          out: Path = typer.Option(..., help="scores.parquet to write."),
          patches: Optional[Path] = typer.Option(None, help="cnn_survival: the cohort's lesion patches "
                                                            "(`biomarkers lesion-patches`)."),
          expect_sha256: Optional[str] = typer.Option(None, help="Refuse the model unless its bundle SHA-256 "
                                                                 "(printed by `fit`) is this one."),
          threads: int = _THREADS) -> None:
    """Apply a frozen model to a cohort."""
    _torch_threads(threads)
    from biomarkers.survival.bundle import load_bundle, read_feature_table, score_table, write_scores

    bundle = load_bundle(model, expect_sha256)
    table = read_feature_table(features, need_outcome=False)
    write_scores(score_table(bundle, table, features, _read_bags(patches)), out, bundle)


@app.command()
@user_errors
def evaluate(scores: Path = typer.Option(..., help="scores.parquet with time and event."),
             out: Path = typer.Option(..., help="metrics.json to write."),
             truth: Optional[Path] = typer.Option(None, help="truth.tsv of a simulated cohort (adds the oracle C-index)."),
             bootstrap: int = typer.Option(1000, help="Bootstrap resamples."),
             seed: int = typer.Option(0, help="Bootstrap seed."),
             table: Optional[Path] = typer.Option(None, help="Also write the headline metrics as TSV."),
             km_plot: Optional[Path] = typer.Option(None, help="Kaplan-Meier plot by risk group (PNG)."),
             cindex_plot: Optional[Path] = typer.Option(None, help="C-index interval plot (PNG)."),
             calibration_plot: Optional[Path] = typer.Option(None, help="Calibration at the horizon (PNG; needs surv_<T> columns)."),
             uncertainty_plot: Optional[Path] = typer.Option(None, help="MC-dropout uncertainty checks (PNG; needs risk_sd > 0)."),
             horizon: Optional[float] = typer.Option(None, help="Calibration horizon in days (default: the middle scored horizon)."),
             label: str = typer.Option("", help="Cohort label for plot titles."),
             model_name: str = typer.Option("", help="Model name for the table's model column and plot titles.")) -> None:
    """Validation statistics with bootstrap confidence intervals."""
    from biomarkers.validation.evaluate import evaluate_to_files

    evaluate_to_files(scores, out, truth, bootstrap, seed, table, km_plot, cindex_plot, label, horizon_days=horizon,
                      calibration_plot=calibration_plot, uncertainty_plot=uncertainty_plot, model_name=model_name)


@app.command()
@user_errors
def compare(scores: List[str] = typer.Argument(..., help="NAME=SCORES.parquet of every model, same cohort."),
            out: Path = typer.Option(..., help="TSV to write: one row per pair of models and C-index."),
            bootstrap: int = typer.Option(1000, help="Bootstrap resamples (the same for every model)."),
            seed: int = typer.Option(0, help="Bootstrap seed.")) -> None:
    """Paired bootstrap comparison of models' C-indices on the same cohort."""
    import pandas as pd

    from biomarkers.errors import InputError
    from biomarkers.io.atomic import write_tsv
    from biomarkers.validation.compare import compare_models

    tables = {}
    for name, path in _key_values(scores, "NAME=SCORES").items():
        if not Path(path).is_file():
            raise InputError("scores file does not exist", path=path)
        tables[name] = pd.read_parquet(path)
    if len(tables) < 2:
        raise ValueError("compare needs the scores of at least two models")
    result = compare_models(tables, bootstrap, seed)
    write_tsv(result, out, float_format="%.4g")
    typer.echo(result.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command("uncertainty-plot")
@user_errors
def uncertainty_plot(scores: Path = typer.Option(..., help="scores.parquet of an MC-dropout model, with outcomes."),
                     metrics: Path = typer.Option(..., help="metrics.json written by `evaluate` for these scores."),
                     out: Path = typer.Option(..., help="PNG to write."),
                     label: str = typer.Option("", help="Title label (model and cohort).")) -> None:
    """Does the MC-dropout spread mean something: discordance by risk_sd and C-index after abstention."""
    import json

    import pandas as pd

    from biomarkers.errors import InputError
    from biomarkers.report.validation_plots import uncertainty_plot as plot

    for path in (scores, metrics):
        if not path.is_file():
            raise InputError("file does not exist", path=path)
    checks = json.loads(metrics.read_text()).get("uncertainty")
    if checks is None:
        raise InputError("no uncertainty checks in the metrics (a deterministic model has risk_sd = 0)", path=metrics)
    plot(pd.read_parquet(scores), out, f"Uncertainty, {label}".rstrip(", "), checks=checks)


@app.command()
@user_errors
def collect(tables: List[Path] = typer.Argument(..., help="TSV tables with the same columns."),
            out: Path = typer.Option(..., help="Combined TSV to write.")) -> None:
    """Stack TSV tables (e.g. every cohort's metrics) into one."""
    from biomarkers.io.atomic import concat_tsv

    concat_tsv(tables, out)


@app.command()
@user_errors
def headline(metrics: Path = typer.Argument(..., help="Stacked metrics TSV (`collect` of every evaluate --table)."),
             out: Path = typer.Option(..., help="TSV to write: one row per model and cohort."),
             skip_cohort: List[str] = typer.Option([], help="Cohort to leave out (e.g. the training cohort); repeatable."),
             plot: Optional[Path] = typer.Option(None, help="Harrell's C (95 % interval) of every model side by side (PNG)."),
             plot_skip_cohort: List[str] = typer.Option([], help="Cohort the plot leaves out (e.g. the training "
                                                                 "cohort, whose C is apparent); repeatable.")) -> None:
    """Headline metrics per model and cohort, as 'estimate (95 % interval)' text."""
    import pandas as pd

    from biomarkers.errors import InputError
    from biomarkers.io.atomic import write_tsv
    from biomarkers.validation.evaluate import headline_table

    if not metrics.is_file():
        raise InputError("metrics table does not exist", path=metrics)
    table = pd.read_csv(metrics, sep="\t")
    table = table[~table["cohort"].astype(str).isin(skip_cohort)] if "cohort" in table else table
    result = headline_table(table)
    write_tsv(result, out)
    if plot is not None:
        from biomarkers.report.plots import model_cindex_plot

        model_cindex_plot(table[~table["cohort"].astype(str).isin(plot_skip_cohort)], plot)
    typer.echo(result.to_string(index=False))


@app.command()
@user_errors
def batch(tasks: str = typer.Option(..., help="JSON array of argument lists, one per subject, e.g. "
                                              "'[[\"features\", \"--image\", \"a.nii.gz\", ...], ...]'.")) -> None:
    """Run many per-subject verbs (suv, segment, features, embed, stability) in one process."""
    from biomarkers.batch import parse_tasks, run_tasks

    command = typer.main.get_command(app)
    status = run_tasks(parse_tasks(tasks), lambda argv: command.main(args=argv, prog_name="biomarkers",
                                                                     standalone_mode=False) or 0)
    if status:
        raise typer.Exit(status)


# A study from the user's files; its frozen signature; new patients scored through it.
from biomarkers import cli_study, cli_uncertainty  # noqa: E402  (after `user_errors`, which wraps its verbs)

app.command("init")(user_errors(cli_study.init))
app.command("image-sheet")(user_errors(cli_study.image_sheet))
app.command("signature")(user_errors(cli_study.signature))
app.command("predict")(user_errors(cli_study.predict))
app.command("uncertainty-choice")(user_errors(cli_uncertainty.uncertainty_choice))
app.command("uncertainty-scores")(user_errors(cli_uncertainty.uncertainty_scores))
app.command("uncertainty-evaluate")(user_errors(cli_uncertainty.uncertainty_evaluate))
app.command("subtypes")(user_errors(cli_uncertainty.subtypes))
app.command("explain")(user_errors(cli_uncertainty.explain))
app.command("pretraining")(user_errors(cli_uncertainty.pretraining))


def main() -> None:
    """Entry point of the ``biomarkers`` console script."""
    app()


if __name__ == "__main__":
    sys.exit(main())
