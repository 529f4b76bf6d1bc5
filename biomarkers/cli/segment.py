"""Lesion segmentation: ``segment``, ``train-unet``, ``segment-quality``."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from biomarkers.cli import args as cli_args
from biomarkers.cli.app import app, user_errors
from biomarkers.cli.args import key_values as _key_values
from biomarkers.segment.unet_settings import SPACING_MM, UNetTraining

_THREADS = cli_args.THREADS
_torch_threads = cli_args.torch_threads


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


_UNET = UNetTraining()


@app.command("train-unet")
@user_errors
def train_unet(subjects: Path = typer.Option(..., help="Subjects sheet with pet, ct and mask (reference) columns."),
               cohort: str = typer.Option(..., help="Cohort whose reference masks train the network."),
               out: Path = typer.Option(..., help="Checkpoint to write."),
               epochs: int = typer.Option(_UNET.epochs, help="Epochs."),
               patches_per_epoch: int = typer.Option(_UNET.patches_per_epoch, help="Patches sampled per epoch."),
               batch_size: int = typer.Option(_UNET.batch_size, help="Patches per optimisation step."),
               base_channels: int = typer.Option(_UNET.base_channels, help="Channels of the first level (doubled "
                                                                           "per level)."),
               patch: int = typer.Option(_UNET.patch_size[0], help="Patch edge in voxels."),
               use_ct: bool = typer.Option(True, help="Two channels (PET and CT); --no-use-ct for PET alone."),
               use_organs: Optional[bool] = typer.Option(None, help="Learn the sheet's organ masks too (organ-aware "
                                                                    "network); default: when the sheet has organs."),
               spacing_mm: float = typer.Option(SPACING_MM, help="Isotropic voxel spacing the network works at "
                                                                 "(images are resampled to it); 0: each image's own "
                                                                 "grid."),
               lr: float = typer.Option(_UNET.lr, help="AdamW learning rate."),
               lesion_fraction: float = typer.Option(_UNET.lesion_fraction, help="Share of patches centred on a "
                                                                                 "lesion voxel."),
               hot_fraction: float = typer.Option(_UNET.hot_fraction, help="Share of the other patches centred on hot "
                                                                           "(SUV >= 2.5) non-lesion voxels: "
                                                                           "physiological uptake as hard negatives."),
               organ_fraction: float = typer.Option(_UNET.organ_fraction, help="Organ-aware network: share of the "
                                                                               "other patches centred on an organ, "
                                                                               "each organ equally often."),
               blur_fwhm_mm: float = typer.Option(0.0, help="Resolution augmentation: half the patches get their PET "
                                                            "blurred by a Gaussian of FWHM up to this (mm) per axis, "
                                                            "for centres with coarser scanners; 0: none."),
               threads: int = _THREADS,
               seed: int = typer.Option(_UNET.seed, help="Seed of weights, patches and augmentation."),
               device: str = typer.Option(_UNET.device, help="auto (CUDA when present) | cpu | cuda.")) -> None:
    """Train the 3D U-Net on a cohort's reference lesion masks (patches balanced lesion/background)."""
    from biomarkers.segment.unet_run import train_unet_from_sheet

    _torch_threads(threads)
    settings = UNetTraining(epochs, patches_per_epoch, batch_size, lr, seed=seed, device=device,
                            patch_size=(patch, patch, patch), base_channels=base_channels,
                            lesion_fraction=lesion_fraction, hot_fraction=hot_fraction, organ_fraction=organ_fraction,
                            spacing_mm=(spacing_mm,) * 3 if spacing_mm > 0 else None).with_blur(blur_fwhm_mm)
    history = train_unet_from_sheet(subjects, cohort, out, settings, use_ct=use_ct, use_organs=use_organs)
    typer.echo(f"trained {epochs} epoch(s); loss {history[0]:.4f} -> {history[-1]:.4f}; {out}")


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
