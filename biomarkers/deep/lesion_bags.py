"""Every lesion patch of a cohort, grouped by subject: the input of end-to-end deep survival.

A :class:`LesionBags` holds the lesion-centred patches (:mod:`biomarkers.deep.crops`) of every
subject of one cohort, in the order of the subjects sheet, with the subjects that have no
lesion kept as empty bags (their prognosis still counts). It is stored as an ``.npz`` archive
(``numpy.load`` reads it) with the arrays

``patches``
    float32 (n_lesions, C, D, H, W), channels as in :data:`biomarkers.deep.crops.CHANNELS`;
``subject_id`` / ``lesion_id``
    the subject and the mask label of each patch row;
``subjects``
    every subject of the cohort, in order (also those without a lesion);
``spec``
    the :class:`~biomarkers.deep.crops.PatchSpec` record and the normalisation, as JSON.

The archive members carry a fixed time stamp, so the same patches give the same bytes.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from biomarkers.deep.crops import PatchSpec, subject_patches
from biomarkers.deep.normalise import normalisation_record
from biomarkers.errors import InputError, SubjectsSheetError
from biomarkers.io.atomic import atomic_path
from biomarkers.io.layout import lesion_mask_path
from biomarkers.io.subjects import check_subject_files, read_subjects

#: ``format`` entry of the archive's ``spec``.
ARCHIVE_FORMAT = "biomarkers.lesion_bags/1"
#: Patch of end-to-end models: 64 mm at 4 mm voxels (near the 3-5 mm of PET grids), PET, CT, mask.
DEFAULT_SPEC = PatchSpec((64.0, 64.0, 64.0), (16, 16, 16), ("pet", "ct", "mask"))
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass
class LesionBags:
    """Lesion patches of a cohort's subjects (module docstring)."""

    patches: np.ndarray
    subject_id: np.ndarray
    lesion_id: np.ndarray
    subjects: list[str]
    spec: PatchSpec
    #: The archive it was read from (for messages), if any.
    path: str | None = None

    def __post_init__(self) -> None:
        self.patches = np.asarray(self.patches, dtype=np.float32)
        self.subject_id = np.asarray(self.subject_id, dtype=str)
        self.lesion_id = np.asarray(self.lesion_id, dtype=np.int64)
        self.subjects = [str(s) for s in self.subjects]
        expected = (len(self.spec.channels), *self.spec.shape)
        if self.patches.ndim != 5 or self.patches.shape[1:] != expected:
            raise ValueError(f"patches must have shape (n, {', '.join(map(str, expected))}), got {self.patches.shape}")
        if not len(self.subject_id) == len(self.lesion_id) == len(self.patches):
            raise ValueError("patches, subject_id and lesion_id must have one row per lesion")
        unknown = sorted(set(self.subject_id) - set(self.subjects))
        if unknown:
            raise ValueError(f"lesion rows of subject(s) not in the cohort: {', '.join(unknown[:3])}")

    def bags(self, subject_ids) -> list[np.ndarray]:
        """The patches (n_i, C, D, H, W) of each of ``subject_ids``, in that order.

        Raises
        ------
        KeyError
            Naming the first subject the archive does not hold.
        """
        known = set(self.subjects)
        missing = [str(s) for s in subject_ids if str(s) not in known]
        if missing:
            raise KeyError(missing[0])
        rows: dict[str, list[int]] = {}
        for i, sid in enumerate(self.subject_id):
            rows.setdefault(sid, []).append(i)
        return [self.patches[rows.get(str(s), [])] for s in subject_ids]

    def record(self) -> dict:
        """What the patches are (spec and normalisation), as stored in the archive and in models."""
        return {"format": ARCHIVE_FORMAT, "patch": self.spec.record(),
                "normalisation": normalisation_record(self.spec.with_ct)}


def write_bags(bags: LesionBags, path: str | Path) -> None:
    """Write ``bags`` as an ``.npz`` archive, atomically and byte-reproducibly."""
    arrays = {"patches": bags.patches, "subject_id": bags.subject_id, "lesion_id": bags.lesion_id,
              "subjects": np.asarray(bags.subjects, dtype=str),
              "spec": np.asarray(json.dumps(bags.record(), sort_keys=True))}
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.array(array, order="C"), allow_pickle=False)
                archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE), buffer.getvalue())


def read_bags(path: str | Path) -> LesionBags:
    """Read an archive written by :func:`write_bags`.

    Raises
    ------
    InputError
        The file is missing, not such an archive, or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("lesion patch archive does not exist", path=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            record = json.loads(str(data["spec"].reshape(-1)[0]))
            arrays = {k: data[k] for k in ("patches", "subject_id", "lesion_id", "subjects")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"not a lesion patch archive ({exc})", path=path) from None
    if record.get("format") != ARCHIVE_FORMAT:
        raise InputError(f"lesion patch archive of format {record.get('format')!r}, this version reads "
                         f"{ARCHIVE_FORMAT}; rebuild it with `biomarkers lesion-patches`", path=path)
    return LesionBags(arrays["patches"], arrays["subject_id"], arrays["lesion_id"], list(arrays["subjects"]),
                      PatchSpec.from_record(record["patch"]), str(path))


def bags_from_sheet(subjects_path: str | Path, cohort: str, masks: str | Path, spec: PatchSpec = DEFAULT_SPEC,
                    progress: bool = True) -> LesionBags:
    """Lesion patches of every subject of ``cohort`` in a subjects sheet.

    Parameters
    ----------
    subjects_path : str or Path
        Subjects sheet (``subject_id``, ``cohort``, ``pet``; ``ct`` when ``spec`` has a CT channel).
    cohort : str
        The ``cohort`` value whose subjects are read.
    masks : str or Path
        Folder of ``<subject_id>_lesions.nii.gz`` label images, or a pattern with ``{subject_id}``
        (:func:`biomarkers.io.layout.lesion_mask_path`).
    spec : PatchSpec
        Patch size, voxels and channels.

    Raises
    ------
    SubjectsSheetError
        No subject in ``cohort``.
    InputError
        A subject's image or mask is missing or not on the PET grid (naming subject and file).
    """

    columns = ["pet"] + (["ct"] if spec.with_ct else [])
    sheet = read_subjects(subjects_path, required=["subject_id", "cohort", *columns])
    members = sheet[sheet["cohort"] == cohort]
    if members.empty:
        found = ", ".join(sorted(sheet["cohort"].dropna().astype(str).unique())) or "none"
        raise SubjectsSheetError(f"no subject in cohort {cohort!r} (cohorts: {found})", path=subjects_path)
    check_subject_files(members, columns, subjects_path)
    paths = {row.subject_id: lesion_mask_path(masks, row.subject_id) for row in members.itertuples(index=False)}
    for sid, mask in paths.items():
        if not mask.is_file():
            raise InputError("lesion mask does not exist; segment the subject first", sid, mask)
    patches, sids, lesion_ids = [], [], []
    for row in tqdm(list(members.itertuples(index=False)), desc=f"lesion patches {cohort}", unit="subject",
                    disable=not progress):
        sid = str(row.subject_id)
        rows, ids = subject_patches(row.pet, row.ct if spec.with_ct else None, paths[row.subject_id], sid, spec)
        patches.append(rows)
        sids += [sid] * len(ids)
        lesion_ids += ids
    stacked = np.concatenate(patches) if patches else np.zeros((0, len(spec.channels), *spec.shape), np.float32)
    return LesionBags(stacked, np.asarray(sids, dtype=str), np.asarray(lesion_ids, dtype=np.int64),
                      [str(s) for s in members["subject_id"]], spec)
