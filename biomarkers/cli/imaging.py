"""Image conversion and the simulated cohort: ``simulate``, ``suv``, ``mask``, ``resample``."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from biomarkers.cli.app import app, user_errors
from biomarkers.errors import InputError


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
