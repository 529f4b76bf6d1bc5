"""Lesion features: ``features``, ``stability``, ``icc``, ``aggregate``, the CNN features (``lesion-patches``, ``train-autoencoder``, ``embed``) and ``batch`` (many per-subject verbs in one process)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from biomarkers.cli import args as cli_args
from biomarkers.cli.app import app, user_errors
from biomarkers.deep.defaults import AutoencoderTraining
from biomarkers.cli.args import split_list as _split

_THREADS = cli_args.THREADS
_torch_threads = cli_args.torch_threads


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
                      latent: int = typer.Option(AutoencoderTraining.latent, help="Length of the feature vector."),
                      epochs: int = typer.Option(AutoencoderTraining.epochs, help="Epochs."),
                      use_ct: bool = typer.Option(True, help="PET and CT channels; --no-use-ct for PET alone."),
                      seed: int = typer.Option(AutoencoderTraining.seed, help="Seed of weights, batches and augmentation."),
                      threads: int = _THREADS,
                      device: str = typer.Option(AutoencoderTraining.device, help="auto | cpu | cuda.")) -> None:
    """Self-supervised 3D autoencoder on the lesion-centred patches of a cohort (for `embed`)."""
    from biomarkers.deep.crops import PatchSpec
    from biomarkers.features.embed_run import train_autoencoder_from_sheet

    _torch_threads(threads)
    patch = PatchSpec(channels=("pet", "ct", "mask") if use_ct else ("pet", "mask"))
    info = train_autoencoder_from_sheet(subjects, cohort, masks, out, patch,
                                        AutoencoderTraining(latent, epochs, seed=seed, device=device))
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
def batch(tasks: str = typer.Option(..., help="JSON array of argument lists, one per subject, e.g. "
                                              "'[[\"features\", \"--image\", \"a.nii.gz\", ...], ...]'.")) -> None:
    """Run many per-subject verbs (suv, segment, features, embed, stability) in one process."""
    from biomarkers.batch import parse_tasks, run_tasks

    command = typer.main.get_command(app)
    status = run_tasks(parse_tasks(tasks), lambda argv: command.main(args=argv, prog_name="biomarkers",
                                                                     standalone_mode=False) or 0)
    if status:
        raise typer.Exit(status)
