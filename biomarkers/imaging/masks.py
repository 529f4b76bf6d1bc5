"""Masks in any common format, brought onto the reference (PET) grid as a label image.

Formats: label images (NIfTI, NRRD, MetaImage), DICOM-SEG (read with highdicom) and
DICOM RTSTRUCT (closed planar contours, rasterised here). The result is always a uint16
image on the reference grid, 0 for background.

RTSTRUCT rasterisation rules
----------------------------
* Contour points (patient mm) are mapped to continuous voxel indices of the reference.
  A contour must be parallel to the reference slices: its points may spread over at
  most half a slice along the slice axis, else the file is refused (tilted contours).
* Contours of one ROI whose planes agree within 0.01 mm form one plane. Each reference
  slice takes the plane nearest its centre, if that plane lies within half a slice
  spacing (a tie goes to the lower plane); a plane nearest to no slice centre is
  skipped and counted (``planes_outside`` when outside the grid, ``planes_unused``
  when a nearer plane served its slice, as when 1 mm CT contours meet 4 mm PET
  slices). Slices between sparser contour planes stay empty: nothing is interpolated.
* In a plane, a voxel is inside by the even-odd rule over all contours of the ROI in
  that plane (so an inner contour cuts a hole), and voxel centres on a contour line
  (within 0.01 voxel) count as inside, for outer and inner contours alike, because
  tools such as rt-utils draw contours through the centres of the boundary voxels.
* Where ROIs overlap, the later one in ``roi_names`` order wins (likewise the higher
  segment of a DICOM-SEG).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
import SimpleITK as sitk

from biomarkers.errors import GeometryError, InputError
from biomarkers.imaging.resample import resample_to
from biomarkers.io.images import grid_differences, read_image, to_array

MaskKind = Literal["auto", "image", "seg", "rtstruct"]

#: File endings read as label images.
LABEL_IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Distance (voxels) within which a voxel centre counts as lying on a contour line.
BOUNDARY_TOLERANCE_VOXELS = 0.01

#: Contours whose planes differ by less than this (mm) share a plane.
PLANE_TOLERANCE_MM = 0.01

_MODALITY_KIND = {"SEG": "seg", "RTSTRUCT": "rtstruct"}
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContourTransfer:
    """How one RTSTRUCT ROI's contour planes were placed on the reference slices."""

    roi_name: str
    planes_used: int
    planes_unused: int
    planes_outside: int
    voxels: int


def read_mask(path: str | Path, reference: sitk.Image, subject_id: str | None = None,
              kind: MaskKind = "auto", resample: bool = False,
              roi_names: Sequence[str] | None = None, *,
              reference_path: str | Path | None = None) -> sitk.Image:
    """Read a mask of any supported format as a label image on the reference grid.

    Parameters
    ----------
    path : str or Path
        A label image (``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``),
        a DICOM-SEG or RTSTRUCT file, or a folder holding exactly one of those.
    reference : SimpleITK.Image
        The image (usually the PET) whose grid the mask is brought onto.
    subject_id : str, optional
        Used in error messages.
    kind : {"auto", "image", "seg", "rtstruct"}
        Format; ``auto`` decides by file ending, then by the DICOM Modality.
    resample : bool
        Label images only: resample a mask on another grid onto the reference grid
        by nearest neighbour instead of refusing it. DICOM-SEG and RTSTRUCT are always
        brought onto the reference grid.
    roi_names : sequence of str, optional
        RTSTRUCT ROI names or DICOM-SEG segment labels to keep, in label order
        (label 1 is the first name). Default: every ROI (with closed contours) in
        ROINumber order, or every segment in segment-number order.
    reference_path : str or Path, optional
        File of ``reference``, named in geometry errors.

    Returns
    -------
    SimpleITK.Image
        uint16 labels on the reference grid. Label images keep their label values;
        DICOM masks are labelled 1..n in the order above.

    Raises
    ------
    InputError
        Missing, unreadable or unsupported file, unknown ROI name, non-integer or
        negative labels, or no labelled voxel on the reference grid.
    GeometryError
        A label image on another grid while ``resample`` is false.
    """
    found, file = detect_mask_kind(path, kind, subject_id)
    if roi_names is not None and found == "image":
        raise InputError("roi_names applies to DICOM-SEG and RTSTRUCT masks only, not to "
                         "label images", subject_id, file)
    if found == "image":
        labels = _read_label_image(file, reference, subject_id, resample, reference_path)
    elif found == "seg":
        labels = read_seg(file, reference, subject_id, roi_names)
    else:
        labels, _ = read_rtstruct(file, reference, subject_id, roi_names)
    if not np.any(sitk.GetArrayViewFromImage(labels)):
        raise InputError("the mask has no labelled voxel on the reference image grid; check "
                         "that mask and image belong together and overlap", subject_id, file)
    return labels


def detect_mask_kind(path: str | Path, kind: MaskKind = "auto",
                     subject_id: str | None = None) -> tuple[str, Path]:
    """Return the mask format (``image``, ``seg`` or ``rtstruct``) and the file to read.

    A folder is searched (not recursively) for the one DICOM-SEG or RTSTRUCT it holds.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("mask file does not exist", subject_id, path)
    if kind not in ("auto", "image", "seg", "rtstruct"):
        raise InputError(f"unknown mask kind {kind!r} (auto, image, seg, rtstruct)", subject_id, path)
    if kind == "image" or (kind == "auto" and path.name.lower().endswith(LABEL_IMAGE_SUFFIXES)):
        if path.is_dir():
            raise InputError("a label image must be a file, not a folder", subject_id, path)
        return "image", path
    if path.is_dir():
        return _find_in_folder(path, kind, subject_id)
    modality = _modality(path)
    if modality is None:
        raise InputError(f"neither a label image ({', '.join(LABEL_IMAGE_SUFFIXES)}) nor a "
                         "readable DICOM file", subject_id, path)
    found = _MODALITY_KIND.get(modality)
    if found is None or kind not in ("auto", found):
        wanted = "DICOM-SEG or RTSTRUCT" if kind == "auto" else kind.upper()
        raise InputError(f"DICOM Modality is {modality or 'missing'}, expected {wanted}",
                         subject_id, path)
    return found, path


def _modality(path: Path) -> str | None:
    """The Modality of a DICOM file ('' when absent), or None when not DICOM."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):
        return None
    return str(ds.get("Modality", "")).upper()


def _find_in_folder(folder: Path, kind: MaskKind, subject_id: str | None) -> tuple[str, Path]:
    hits = [(found, file) for file in sorted(folder.iterdir()) if file.is_file()
            for found in [_MODALITY_KIND.get(_modality(file) or "")]
            if found is not None and kind in ("auto", found)]
    wanted = "DICOM-SEG or RTSTRUCT" if kind == "auto" else kind.upper()
    if not hits:
        raise InputError(f"the folder holds no {wanted} file", subject_id, folder)
    if len(hits) > 1:
        names = ", ".join(file.name for _, file in hits)
        raise InputError(f"the folder holds several {wanted} files ({names}); give one "
                         "file instead of the folder", subject_id, folder)
    return hits[0]


def _read_label_image(path: Path, reference: sitk.Image, subject_id: str | None, resample: bool,
                      reference_path: str | Path | None) -> sitk.Image:
    mask = read_image(path, subject_id, "mask")  # a 3D scalar image of whole, non-negative labels
    values = sitk.GetArrayViewFromImage(mask)
    if values.size and values.max() > np.iinfo(np.uint16).max:
        raise InputError("labels must lie between 0 and 65535", subject_id, path)
    mask = sitk.Cast(mask, sitk.sitkUInt16)
    problems = grid_differences(reference, mask)
    if not problems:
        mask.CopyInformation(reference)
        return mask
    if not resample:
        ref_name = reference_path if reference_path is not None else "the reference image"
        raise GeometryError(f"voxel grid differs from {ref_name} ({'; '.join(problems)}); "
                            "resample the mask onto that grid, or read it with resample=True "
                            "(nearest neighbour)", subject_id, path)
    return resample_to(mask, reference, "nearest", 0)


def _select(available: list[str], roi_names: Sequence[str] | None, what: str, path: Path,
            subject_id: str | None) -> list[int]:
    """Positions in ``available`` of the requested names (all when ``roi_names`` is None)."""
    if roi_names is None:
        return list(range(len(available)))
    if isinstance(roi_names, str):
        roi_names = [roi_names]
    listed = ", ".join(map(repr, available)) or "none"
    if not roi_names or len(set(roi_names)) != len(roi_names):
        raise InputError(f"{what} names must be distinct and not empty (got {list(roi_names)}); "
                         f"available: {listed}", subject_id, path)
    unknown = [name for name in roi_names if name not in available]
    if unknown:
        raise InputError(f"{what} {', '.join(map(repr, unknown))} not found; available: {listed}",
                         subject_id, path)
    return [available.index(name) for name in roi_names]


def read_seg(path: str | Path, reference: sitk.Image, subject_id: str | None = None,
             segment_labels: Sequence[str] | None = None) -> sitk.Image:
    """Read a DICOM-SEG (binary, fractional or labelmap) onto the reference grid.

    Segments become labels 1..n in segment-number order (or in ``segment_labels``
    order); fractional segments are thresholded at 0.5. The SEG's own volume (from
    its per-frame plane positions, via highdicom) is resampled by nearest neighbour.
    """
    import highdicom as hd

    path = Path(path)
    try:
        seg = hd.seg.segread(path)
        numbers = list(seg.segment_numbers)
        names = [str(seg.get_segment_description(n).SegmentLabel) for n in numbers]
        chosen = [numbers[i] for i in _select(names, segment_labels, "segment", path, subject_id)]
        volume = seg.get_volume(segment_numbers=chosen, combine_segments=False,
                                rescale_fractional=True)
    except InputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, RuntimeError) as exc:
        raise InputError(f"cannot read DICOM-SEG as a 3D volume ({exc})", subject_id, path) from None
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    channels = volume.array.reshape(volume.spatial_shape + (len(chosen),))
    labels = np.zeros(volume.spatial_shape, np.uint16)
    for label, channel in enumerate(np.moveaxis(channels, -1, 0), start=1):
        labels[channel >= 0.5 if fractional else channel > 0] = label
    image = volume.with_array(labels).to_simpleitk()
    return resample_to(image, reference, "nearest", 0)


def read_rtstruct(path: str | Path, reference: sitk.Image, subject_id: str | None = None,
                  roi_names: Sequence[str] | None = None
                  ) -> tuple[sitk.Image, list[ContourTransfer]]:
    """Rasterise RTSTRUCT ROIs onto the reference grid (rules in the module docstring).

    The referenced CT series is not needed: contours are in patient coordinates.

    Returns
    -------
    labels : SimpleITK.Image
        uint16, ROI ``i`` of the selection as label ``i + 1``.
    transfers : list of ContourTransfer
        Per ROI, how many contour planes were used, unused or outside the grid.
    """
    path = Path(path)
    try:
        rois = _rtstruct_contours(pydicom.dcmread(path))
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, TypeError, KeyError,
            AttributeError) as exc:
        raise InputError(f"cannot read RTSTRUCT ({exc})", subject_id, path) from None
    if roi_names is None:
        rois = [roi for roi in rois if roi[1]]
        if not rois:
            raise InputError("the RTSTRUCT holds no ROI with closed planar contours", subject_id, path)
    picked = [rois[i] for i in _select([name for name, _ in rois], roi_names, "ROI", path, subject_id)]
    size_x, size_y, size_z = reference.GetSize()
    labels = np.zeros((size_z, size_y, size_x), np.uint16)
    counts = []
    for label, (name, contours) in enumerate(picked, start=1):
        if not contours:
            raise InputError(f"ROI {name!r} has no closed planar contour", subject_id, path)
        indices = [_to_index(points, reference) for points in contours]
        spread = max(float(np.ptp(index[:, 2])) for index in indices)
        if spread > 0.5:
            raise InputError(f"contours of ROI {name!r} are not parallel to the slices of the "
                             f"reference image (they span {spread:.2f} slices); resample the "
                             "image so that its slices match the contour planes", subject_id, path)
        planes = _group_planes(indices, PLANE_TOLERANCE_MM / reference.GetSpacing()[2])
        positions = np.array([k for k, _ in planes])
        used: set[int] = set()
        for k in range(size_z):
            best = int(np.argmin(np.abs(positions - k)))
            if abs(positions[best] - k) <= 0.5 + 1e-9:
                used.add(best)
                labels[k][_fill_plane(planes[best][1], size_y, size_x)] = label
        outside = int(np.sum((positions < -0.5 - 1e-9) | (positions > size_z - 0.5 + 1e-9)))
        counts.append((name, len(used), len(planes) - len(used) - outside, outside))
    transfers = [ContourTransfer(*count, int(np.sum(labels == label)))
                 for label, count in enumerate(counts, start=1)]
    for transfer in transfers:
        if transfer.planes_outside or not transfer.voxels:
            _log.warning("%s: ROI %r: %d contour planes outside the reference grid, %d voxels",
                         path, transfer.roi_name, transfer.planes_outside, transfer.voxels)
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return image, transfers


def _to_index(points_mm: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """Continuous (x, y, z) voxel indices of (n, 3) patient points in ``reference``."""
    direction = np.asarray(reference.GetDirection(), float).reshape(3, 3)
    to_index = np.linalg.inv(direction @ np.diag(reference.GetSpacing()))
    return (points_mm - np.asarray(reference.GetOrigin())) @ to_index.T


def _rtstruct_contours(ds: pydicom.Dataset) -> list[tuple[str, list[np.ndarray]]]:
    """(ROI name, closed planar contours as (n, 3) mm arrays) in ROINumber order."""
    modality = str(ds.get("Modality", ""))
    if modality != "RTSTRUCT":
        raise ValueError(f"Modality is {modality or 'missing'}, not RTSTRUCT")
    names = {int(item.ROINumber): str(item.ROIName) for item in ds.StructureSetROISequence}
    contours: dict[int, list[np.ndarray]] = {number: [] for number in names}
    for item in ds.get("ROIContourSequence", []):
        for contour in item.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "")) == "CLOSED_PLANAR":
                points = _contour_points(contour)
                if len(points):
                    contours.setdefault(int(item.ReferencedROINumber), []).append(points)
    return [(names.get(number, f"ROI {number}"), contours[number]) for number in sorted(contours)]


def _contour_points(contour: pydicom.Dataset) -> np.ndarray:
    """ContourData as (n, 3) mm, parsed from the raw bytes when unread (pydicom's DS is slow)."""
    element = contour.get_item("ContourData")
    value = None if element is None else element.value
    if isinstance(value, bytes):
        return np.array(value.replace(b"\\", b" ").split(), dtype=float).reshape(-1, 3)
    return np.asarray([] if value is None else value, dtype=float).reshape(-1, 3)


def _group_planes(indices: list[np.ndarray], tolerance_slices: float
                  ) -> list[tuple[float, list[np.ndarray]]]:
    """Contours grouped by plane: (mean slice index, in-plane (x, y) indices), ascending."""
    order = sorted(range(len(indices)), key=lambda i: float(np.mean(indices[i][:, 2])))
    planes: list[tuple[float, list[np.ndarray]]] = []
    for i in order:
        k = float(np.mean(indices[i][:, 2]))
        if planes and k - planes[-1][0] <= tolerance_slices:
            planes[-1][1].append(indices[i][:, :2])
        else:
            planes.append((k, [indices[i][:, :2]]))
    return planes


def _fill_plane(polygons: list[np.ndarray], size_y: int, size_x: int) -> np.ndarray:
    """Voxel centres inside the polygons (x, y in voxel indices): even-odd, boundary inclusive."""
    starts = np.concatenate(polygons)
    ends = np.concatenate([np.roll(polygon, -1, axis=0) for polygon in polygons])
    inside = np.zeros((size_y, size_x), bool)
    low = np.clip(np.floor(starts.min(axis=0)) - 1, 0, [size_x, size_y]).astype(int)
    high = np.clip(np.ceil(starts.max(axis=0)) + 2, 0, [size_x, size_y]).astype(int)
    if np.any(high <= low):
        return inside
    # Interior: an odd number of edges crosses the ray from the centre towards +x. A crossing
    # at x counts for the columns c < x, i.e. up to ceil(x) - 1 (counted by a reversed cumsum).
    n_rows, n_columns = high[1] - low[1], high[0] - low[0]
    rows = np.arange(low[1], high[1], dtype=float)[:, None]
    (x0, y0), (x1, y1) = starts.T, ends.T
    row, edge = np.nonzero((y0 <= rows) != (y1 <= rows))
    x_cross = x0[edge] + (rows[row, 0] - y0[edge]) * (x1 - x0)[edge] / (y1 - y0)[edge]
    last = np.minimum(np.ceil(x_cross) - 1 - low[0], n_columns - 1).astype(int)
    keep = last >= 0
    hits = np.bincount(row[keep] * n_columns + last[keep], minlength=n_rows * n_columns)
    counts = np.cumsum(hits.reshape(n_rows, n_columns)[:, ::-1], axis=1)[:, ::-1]
    inside[low[1]:high[1], low[0]:high[0]] = counts % 2 == 1
    # Boundary: centres within the tolerance of an edge. Such a centre is the rounding of
    # an edge point, and of a sample taken every half voxel along the edge.
    eps = BOUNDARY_TOLERANCE_VOXELS
    steps = np.ceil(np.hypot(*(ends - starts).T) / 0.5).astype(int) + 1
    edge = np.repeat(np.arange(len(starts)), steps)
    fraction = (np.arange(edge.size) - np.repeat(np.cumsum(steps) - steps, steps)) / (steps[edge] - 1).clip(1)
    candidates = np.round(starts[edge] + fraction[:, None] * (ends - starts)[edge])
    step = (ends - starts)[edge]
    t = np.clip(np.sum((candidates - starts[edge]) * step, axis=1)
                / np.maximum(np.sum(step * step, axis=1), 1e-300), 0, 1)
    near = np.hypot(*(candidates - starts[edge] - t[:, None] * step).T) <= eps
    near &= np.all((candidates >= 0) & (candidates < [size_x, size_y]), axis=1)
    inside[candidates[near, 1].astype(int), candidates[near, 0].astype(int)] = True
    return inside


def label_array(mask: sitk.Image, subject_id: str | None = None,
                mask_path: str | Path | None = None) -> np.ndarray:
    """The lesion labels of ``mask`` as an integer array (z, y, x), checked.

    Raises
    ------
    InputError
        If the mask holds non-integer or negative values.
    """
    labels = to_array(mask)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise InputError("mask is not a label image (non-integer values)", subject_id, mask_path)
        labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise InputError("mask has negative labels", subject_id, mask_path)
    return labels
