"""Digital whole-body PET/CT phantom on a fine voxel grid.

The anatomy (body outline, lungs, spine, brain, liver, kidneys, bladder, heart)
is painted as a map of tissue classes on a 2 mm grid covering head to pelvis;
per-subject look-up tables turn the classes into FDG uptake (SUV) and CT
attenuation (HU). Lesions are ellipsoids placed at lymph-node stations, in the
lungs or in the liver, each with its own uptake, a necrotic core and a smooth
multiplicative texture whose amplitude is drawn independently of the uptake.

Coordinates are in mm, ordered (x, y, z) with z along the body axis (z = 0 at
the pelvis); arrays are indexed (z, y, x) as in SimpleITK.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

FOV_MM: tuple[float, float, float] = (360.0, 260.0, 640.0)
FINE_SPACING_MM: float = 2.0
TEXTURE_SIGMA_MM: float = 4.0      # correlation length of the lesion texture
LESION_GAP_MM: float = 4.0         # minimum gap between two lesions
TISSUE_GAP_MM: float = 2.0         # lesions stay this far from other tissues
MAX_LESIONS: int = 8
#: Lesion patterns: ``typical`` (every regular subject), and two unlike any regular subject, for the
#: shifted subjects of :mod:`biomarkers.simulate.shift`: ``bulky`` (eight lesions of 18-22 mm radius
#: and SUV 12-15: a burden beyond the cohort's range) and ``faint`` (uptake SUV 2.6-3.6, near the
#: segmentation threshold, so the measured burden tells little of the true one).
LESION_PATTERNS: tuple[str, ...] = ("typical", "bulky", "faint")

Box = tuple[slice, slice, slice]


class Tissue(IntEnum):
    """Tissue classes of the fine phantom."""

    AIR = 0
    FAT = 1
    SOFT = 2
    LUNG = 3
    SPINE = 4
    SKULL = 5
    BRAIN = 6
    LIVER = 7
    KIDNEY = 8
    BLADDER = 9
    MYOCARDIUM = 10
    BLOOD = 11
    LESION = 12


#: Organ label written to the organs image for each tissue class.
ORGAN_LABELS: dict[Tissue, int] = {Tissue.BRAIN: 1, Tissue.LIVER: 2, Tissue.KIDNEY: 3,
                                   Tissue.BLADDER: 4, Tissue.MYOCARDIUM: 5}
_HU = {Tissue.AIR: -1000, Tissue.FAT: -100, Tissue.SOFT: 40, Tissue.LUNG: -800,
       Tissue.SPINE: 700, Tissue.SKULL: 900, Tissue.BRAIN: 35, Tissue.LIVER: 55,
       Tissue.KIDNEY: 35, Tissue.BLADDER: 5, Tissue.MYOCARDIUM: 45, Tissue.BLOOD: 40,
       Tissue.LESION: 40}
_NODAL = ("neck", "supraclavicular", "axilla", "mediastinum", "paraaortic",
          "mesenteric", "iliac", "inguinal")
_UPPER = ("neck", "supraclavicular", "axilla", "mediastinum", "lung")
_LOWER = ("paraaortic", "mesenteric", "iliac", "inguinal", "liver")


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape (z, y, x), spacing and origin (centre of voxel 0) as (x, y, z) in mm."""

    shape_zyx: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    def centres_mm(self, axis: int) -> np.ndarray:
        """Voxel centre coordinates along ``axis`` (0 = x, 1 = y, 2 = z)."""
        n = self.shape_zyx[2 - axis]
        return self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(n)

    def edges_mm(self, axis: int) -> np.ndarray:
        """Voxel edge coordinates along ``axis`` (length n + 1)."""
        n = self.shape_zyx[2 - axis]
        start = self.origin_mm[axis] - 0.5 * self.spacing_mm[axis]
        return start + self.spacing_mm[axis] * np.arange(n + 1)


def fine_grid() -> Grid:
    """The fine grid the phantom is built on, covering :data:`FOV_MM` from x = -180 mm, z = 0."""
    lo = (-FOV_MM[0] / 2, -FOV_MM[1] / 2, 0.0)
    n = tuple(int(round(f / FINE_SPACING_MM)) for f in FOV_MM)
    origin = tuple(lo[a] + FINE_SPACING_MM / 2 for a in range(3))
    return Grid((n[2], n[1], n[0]), (FINE_SPACING_MM,) * 3, origin)


@dataclass(frozen=True)
class Lesion:
    """Ground truth of one lesion (label ``index`` + 1 in the mask)."""

    site: str
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]
    uptake_suv: float          # mean SUV of the viable (non-necrotic) part
    texture_amplitude: float   # SD of the log texture field, 0 = homogeneous
    necrotic_fraction: float   # radius fraction of the necrotic core
    volume_ml: float           # volume on the fine grid
    box: Box                   # fine-grid bounding box


@dataclass
class Phantom:
    """One subject's fine-grid phantom; arrays are (z, y, x)."""

    grid: Grid
    tissue: np.ndarray         # uint8 tissue classes
    suv: np.ndarray            # float32 SUV
    hu: np.ndarray             # float32 HU
    lesion_labels: np.ndarray  # uint16, 1..n
    lesions: list[Lesion]
    organ_boxes: dict[int, Box]
    liver_suv: float


def box_slices(grid: Grid, lo_mm: np.ndarray, hi_mm: np.ndarray) -> Box | None:
    """Fine-grid slices (z, y, x) of voxel centres inside [lo_mm, hi_mm]; None if empty."""
    out = []
    for axis in (2, 1, 0):
        o, s, n = grid.origin_mm[axis], grid.spacing_mm[axis], grid.shape_zyx[2 - axis]
        i0 = max(0, int(np.ceil((lo_mm[axis] - o) / s)))
        i1 = min(n, int(np.floor((hi_mm[axis] - o) / s)) + 1)
        if i1 <= i0:
            return None
        out.append(slice(i0, i1))
    return out[0], out[1], out[2]


def _offsets(grid: Grid, box: Box, centre_mm: np.ndarray) -> list[np.ndarray]:
    """Broadcastable (x, y, z) offsets of the voxel centres of ``box`` from ``centre_mm``."""
    dx = grid.centres_mm(0)[box[2]] - centre_mm[0]
    dy = grid.centres_mm(1)[box[1]] - centre_mm[1]
    dz = grid.centres_mm(2)[box[0]] - centre_mm[2]
    return [dx[None, None, :], dy[None, :, None], dz[:, None, None]]


def ellipsoid(grid: Grid, centre_mm: np.ndarray, semi_mm: np.ndarray,
              rotation: np.ndarray | None = None,
              pad_mm: float = 0.0) -> tuple[Box, list[np.ndarray]] | tuple[None, None]:
    """Bounding box of an ellipsoid grown by ``pad_mm`` and its local axis coordinates.

    Returns the fine-grid box and the voxel coordinates (mm) along the ellipsoid's
    own axes, so callers evaluate ``sum((q / a) ** 2) <= 1`` for any semi-axes ``a``.
    """
    rot = np.eye(3) if rotation is None else rotation
    half = np.sqrt(((rot * (semi_mm + pad_mm)) ** 2).sum(axis=1))
    box = box_slices(grid, centre_mm - half, centre_mm + half)
    if box is None:
        return None, None
    d = _offsets(grid, box, centre_mm)
    q = [sum(rot[i, k] * d[i] for i in range(3) if rot[i, k] != 0.0) for k in range(3)]
    return box, q


def _rho2(q: list[np.ndarray], semi_mm: np.ndarray) -> np.ndarray:
    """Squared normalised radius of the local coordinates ``q``."""
    return sum((qk / a) ** 2 for qk, a in zip(q, semi_mm))


def _paint(tissue: np.ndarray, grid: Grid, cls: Tissue, centre: tuple[float, float, float],
           semi: tuple[float, float, float]) -> Box:
    box, q = ellipsoid(grid, np.asarray(centre, float), np.asarray(semi, float))
    tissue[box][_rho2(q, np.asarray(semi, float)) <= 1.0] = cls
    return box


def _cylinder(tissue: np.ndarray, grid: Grid, cls: Tissue, cy: float, semi_xy: tuple[float, float],
              z_mm: tuple[float, float]) -> None:
    """Paint an elliptic cylinder along z centred on x = 0, y = ``cy``."""
    box = box_slices(grid, np.array([-semi_xy[0], cy - semi_xy[1], z_mm[0]]),
                     np.array([semi_xy[0], cy + semi_xy[1], z_mm[1]]))
    x = grid.centres_mm(0)[box[2]][None, :]
    y = grid.centres_mm(1)[box[1]][:, None]
    inside = (x / semi_xy[0]) ** 2 + ((y - cy) / semi_xy[1]) ** 2 <= 1.0
    tissue[box[0], box[1], box[2]][:, inside] = cls


def _union(a: Box, b: Box) -> Box:
    return tuple(slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(a, b))


def _anatomy(grid: Grid, rng: np.random.Generator, sex: str) -> tuple[np.ndarray, dict, dict]:
    """Paint the normal anatomy; return tissue map, organ boxes and anatomical landmarks."""
    t = np.zeros(grid.shape_zyx, np.uint8)
    sw = float(np.clip(rng.normal(1.03 if sex == "M" else 0.95, 0.06), 0.85, 1.12))
    sd = float(np.clip(sw * rng.normal(1.0, 0.05), 0.8, 1.18))
    z_sh = float(np.clip(rng.normal(430.0, 6.0), 418.0, 442.0))
    fat_mm = float(rng.uniform(8.0, 25.0))

    def jit() -> np.ndarray:
        return rng.normal(0.0, 6.0, 3)  # organ placement jitter (mm)

    ax, ay = 150.0 * sw, 100.0 * sd
    _cylinder(t, grid, Tissue.FAT, 0.0, (ax, ay), (0.0, z_sh))
    _cylinder(t, grid, Tissue.SOFT, 0.0, (ax - fat_mm, ay - fat_mm), (0.0, z_sh))
    _cylinder(t, grid, Tissue.SOFT, 10.0, (55.0 * sw, 50.0 * sd), (z_sh - 10.0, z_sh + 75.0))
    s_head = float(np.clip(rng.normal(1.0, 0.03), 0.94, 1.07))
    head = np.array([0.0, 0.0, z_sh + 118.0])
    semi_head = np.array([70.0, 88.0, 70.0]) * s_head
    _paint(t, grid, Tissue.SOFT, head, semi_head)
    skull_c = head + np.array([0.0, 5.0, 6.0])
    _paint(t, grid, Tissue.SKULL, skull_c, semi_head - 6.0)
    boxes = {1: _paint(t, grid, Tissue.BRAIN, skull_c, semi_head - 12.0)}
    lungs = []
    for side in (-1.0, 1.0):
        c = np.array([side * 62.0 * sw, 5.0 * sd, z_sh - 105.0]) + jit()
        semi = np.array([48.0 * sw, 68.0 * sd, 100.0]) * rng.uniform(0.92, 1.05)
        _paint(t, grid, Tissue.LUNG, c, semi)
        lungs.append((c, semi))
    liver_c = np.array([-55.0 * sw, -10.0 * sd, z_sh - 225.0]) + jit()
    liver_semi = np.array([85.0 * sw, 68.0 * sd, 62.0]) * rng.uniform(0.9, 1.08)
    boxes[2] = _paint(t, grid, Tissue.LIVER, liver_c, liver_semi)
    for side in (-1.0, 1.0):
        c = np.array([side * 68.0 * sw, 52.0 * sd, z_sh - 275.0]) + jit()
        b = _paint(t, grid, Tissue.KIDNEY, c, np.array([26.0, 24.0, 52.0]) * rng.uniform(0.9, 1.1))
        boxes[3] = b if 3 not in boxes else _union(boxes[3], b)
    fill = rng.uniform(0.7, 1.15)
    boxes[4] = _paint(t, grid, Tissue.BLADDER, np.array([0.0, -25.0 * sd, 55.0]) + jit(),
                      np.array([42.0, 36.0, 32.0]) * fill)
    heart_c = np.array([18.0 * sw, -22.0 * sd, z_sh - 145.0]) + jit()
    heart_semi = np.array([48.0, 42.0, 52.0]) * rng.uniform(0.92, 1.1)
    boxes[5] = _paint(t, grid, Tissue.MYOCARDIUM, heart_c, heart_semi)
    _paint(t, grid, Tissue.BLOOD, heart_c, heart_semi - 11.0)
    _cylinder(t, grid, Tissue.SPINE, 62.0 * sd, (16.0 * sw, 16.0 * sw), (0.0, z_sh + 65.0))
    marks = {"sw": sw, "sd": sd, "z_sh": z_sh, "lungs": lungs,
             "liver": (liver_c, liver_semi)}
    return t, boxes, marks


def _uptake_tables(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject SUV and HU look-up tables indexed by :class:`Tissue`."""
    suv = np.zeros(len(Tissue), np.float32)
    soft = rng.uniform(0.7, 1.0)
    values = {Tissue.FAT: 0.45 * soft, Tissue.SOFT: soft, Tissue.LUNG: rng.uniform(0.35, 0.45),
              Tissue.SPINE: rng.uniform(1.3, 1.7), Tissue.SKULL: 0.5 * soft,
              Tissue.BRAIN: rng.uniform(6.0, 9.0), Tissue.LIVER: rng.uniform(2.0, 2.6),
              Tissue.KIDNEY: rng.uniform(3.0, 5.0), Tissue.BLADDER: rng.uniform(10.0, 30.0),
              Tissue.MYOCARDIUM: rng.uniform(2.0, 8.0), Tissue.BLOOD: rng.uniform(1.5, 2.0)}
    for cls, v in values.items():
        suv[cls] = v
    hu = np.array([_HU[c] for c in Tissue], np.float32)
    return suv, hu


def _site_centre(site: str, rng: np.random.Generator, m: dict) -> np.ndarray:
    """Random lesion centre (mm) for an anatomical site."""
    sw, sd, z_sh = m["sw"], m["sd"], m["z_sh"]
    side = rng.choice((-1.0, 1.0))
    u = rng.uniform
    if site in ("lung", "liver"):
        c, semi = m["lungs"][int(side > 0)] if site == "lung" else m["liver"]
        direction = rng.normal(size=3)
        return c + semi * direction / np.linalg.norm(direction) * u(0.0, 0.7)
    table = {"neck": (side * u(18, 40), u(-25, 10), z_sh + u(5, 55)),
             "supraclavicular": (side * u(45, 90) * sw, u(-10, 30), z_sh + u(-25, 0)),
             "axilla": (side * u(95, 125) * sw, u(-10, 30), z_sh - u(30, 90)),
             "mediastinum": (u(-20, 20), u(-45, 10) * sd, z_sh - u(55, 120)),
             "paraaortic": (u(-35, 35), u(20, 40) * sd, u(100, 240)),
             "mesenteric": (u(-70, 70), u(-60, 0) * sd, u(80, 200)),
             "iliac": (side * u(40, 80), u(-10, 30), u(40, 110)),
             "inguinal": (side * u(60, 100) * sw, u(-60, -30) * sd, u(5, 35))}
    return np.asarray(table[site], float)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _place_lesions(t: np.ndarray, grid: Grid, rng: np.random.Generator,
                   m: dict, liver_suv: float, pattern: str = "typical"
                   ) -> tuple[np.ndarray, list[Lesion], list[np.ndarray]]:
    """Place non-overlapping lesions; return the label map, lesion records and texture fields.

    Each texture field covers its lesion's box and is NaN in the necrotic core. ``pattern``: one
    of :data:`LESION_PATTERNS`; ``typical`` draws exactly what it always drew.
    """
    labels = np.zeros(grid.shape_zyx, np.uint16)
    n_target = min(MAX_LESIONS, 1 + int(rng.poisson(rng.gamma(1.5, 1.5))))
    r_subject = float(np.exp(rng.uniform(np.log(7.5), np.log(16.0))))
    h_subject = float(rng.uniform(0.0, 0.5))
    u_subject = float(np.exp(rng.normal(np.log(7.0), 0.3)))
    uptake_range = (3.5, 15.0)
    if pattern == "bulky":
        n_target, r_subject, u_subject = MAX_LESIONS, float(rng.uniform(18.0, 22.0)), float(rng.uniform(12.0, 15.0))
    elif pattern == "faint":
        u_subject, uptake_range = float(rng.uniform(2.8, 3.4)), (2.6, 3.6)
    region = rng.choice(("upper", "lower", "all"), p=(0.25, 0.25, 0.5))
    sites = {"upper": _UPPER, "lower": _LOWER, "all": _UPPER + _LOWER}[str(region)]
    weights = np.array([0.15 if s in ("lung", "liver") else 0.7 / len(_NODAL) for s in sites])
    lesions: list[Lesion] = []
    textures: list[np.ndarray] = []
    attempts = 0
    while len(lesions) < n_target and attempts < 60 * n_target + (500 if not lesions else 0):
        attempts += 1
        site = str(rng.choice(sites, p=weights / weights.sum()))
        centre = _site_centre(site, rng, m)
        r_eq = float(np.clip(r_subject * np.exp(rng.normal(0.0, 0.25)), 6.5, 22.0))
        ratios = np.exp(rng.normal(0.0, 0.12, 3))
        semi = np.clip(r_eq * ratios / np.cbrt(ratios.prod()), 6.0, 25.0)
        rot = _random_rotation(rng)
        box, q = ellipsoid(grid, centre, semi, rot, pad_mm=LESION_GAP_MM)
        if box is None or any(s.stop - s.start < 3 for s in box):
            continue
        inside = _rho2(q, semi) <= 1.0
        near = _rho2(q, semi + TISSUE_GAP_MM) <= 1.0
        if labels[box][_rho2(q, semi + LESION_GAP_MM) <= 1.0].any():
            continue
        allowed = {"lung": (Tissue.LUNG,), "liver": (Tissue.LIVER,)}.get(site, (Tissue.FAT, Tissue.SOFT))
        if not np.isin(t[box][near], allowed).all() or inside.sum() * FINE_SPACING_MM ** 3 < 1000.0:
            continue
        h = float(np.clip(h_subject + rng.normal(0.0, 0.05), 0.0, 0.55))
        uptake = float(np.clip(u_subject * np.exp(rng.normal(0.0, 0.2)), *uptake_range))
        if site == "liver":
            uptake = max(uptake, 2.5 * liver_suv)
        necrotic = float(rng.uniform(0.3, 0.6)) if r_eq >= 11.0 and rng.random() < 0.4 else 0.0
        field = ndimage.gaussian_filter(rng.standard_normal(inside.shape).astype(np.float32),
                                        TEXTURE_SIGMA_MM / FINE_SPACING_MM, mode="reflect")
        field[inside & (_rho2(q, semi) <= necrotic ** 2)] = np.nan  # necrotic core
        labels[box][inside] = len(lesions) + 1
        t[box][inside] = Tissue.LESION
        lesions.append(Lesion(site, tuple(float(v) for v in centre), tuple(float(v) for v in semi),
                              uptake, h, necrotic,
                              float(inside.sum() * FINE_SPACING_MM ** 3 / 1000.0), box))
        textures.append(field)
    return labels, lesions, textures


def _fill_lesion(suv: np.ndarray, hu: np.ndarray, labels: np.ndarray, lesion: Lesion, label: int,
                 field: np.ndarray, rng: np.random.Generator) -> None:
    """Write a lesion's SUV (textured viable part with the set mean, necrotic core) and HU."""
    inside = labels[lesion.box] == label
    viable = inside & np.isfinite(field)
    core = inside & ~viable
    g = field[viable]
    g = (g - g.mean()) / max(float(g.std()), 1e-6)
    values = np.exp(lesion.texture_amplitude * np.clip(g, -2.5, 2.5))
    suv[lesion.box][viable] = (lesion.uptake_suv * values / values.mean()).astype(np.float32)
    suv[lesion.box][core] = np.float32(rng.uniform(1.0, 2.0))
    hu[lesion.box][viable] = np.float32(rng.uniform(30.0, 50.0))
    hu[lesion.box][core] = np.float32(15.0)


def build_phantom(rng: np.random.Generator, sex: str, pattern: str = "typical") -> Phantom:
    """Build one subject's phantom on :func:`fine_grid`.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness of this subject's anatomy and lesions.
    sex : {"F", "M"}
        Shifts the body-size distribution.
    pattern : str
        Lesion pattern, one of :data:`LESION_PATTERNS`.

    Returns
    -------
    Phantom
        Tissue map, SUV, HU and lesion labels on the fine grid plus ground truth.
    """
    if sex not in ("F", "M"):
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")
    if pattern not in LESION_PATTERNS:
        raise ValueError(f"pattern must be one of {', '.join(LESION_PATTERNS)}, got {pattern!r}")
    grid = fine_grid()
    tissue, organ_boxes, marks = _anatomy(grid, rng, sex)
    suv_lut, hu_lut = _uptake_tables(rng)
    liver_suv = float(suv_lut[Tissue.LIVER])
    labels, lesions, textures = _place_lesions(tissue, grid, rng, marks, liver_suv, pattern)
    if not lesions:
        raise RuntimeError("could not place any lesion in the phantom; this is a bug")
    suv = suv_lut[tissue]
    hu = hu_lut[tissue]
    for k, (lesion, field) in enumerate(zip(lesions, textures)):
        _fill_lesion(suv, hu, labels, lesion, k + 1, field, rng)
    return Phantom(grid, tissue, suv, hu, labels, lesions, organ_boxes, liver_suv)
