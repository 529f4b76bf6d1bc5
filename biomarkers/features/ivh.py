"""Intensity-volume histogram (IVH) features of one region of interest.

Definitions follow the IBSI reference manual (Zwanenburg et al., arXiv:1612.07003, section 3.5
"Intensity-volume histogram features"; https://ibsi.readthedocs.io, "Image features"). For a
discretised intensity ``i`` of the total range ``G`` the manual defines

* the fractional volume ``nu_i = 1 - (1/N) * #{voxels with intensity < i}``, i.e. the fraction
  of the ROI volume with intensity ``i`` or more, and
* the intensity fraction ``gamma_i = (i - min G) / (max G - min G)``,

both evaluated at every intensity of ``G`` one discretisation interval apart, including
intensities that no voxel has. From these:

* ``V_x`` is the largest volume fraction ``nu`` whose intensity fraction ``gamma`` is at least
  ``x %`` (``ivh_v10``, ``ivh_v90``);
* ``I_x`` is the minimum discretised intensity ``i`` present in at most ``x %`` of the volume,
  i.e. the lowest ``i`` with ``nu_i <= x / 100`` (``ivh_i10``, ``ivh_i90``);
* ``ivh_v10_v90 = V_10 - V_90`` and ``ivh_i10_i90 = I_10 - I_90``;
* ``ivh_auc`` is the area under the curve ``nu(gamma)`` by the trapezoidal rule (0 when the
  ROI holds a single discretised intensity).
"""
from __future__ import annotations

import numpy as np

#: Names of the values returned by :func:`ivh_metrics`, in order.
IVH_COLUMNS = ("ivh_v10", "ivh_v90", "ivh_i10", "ivh_i90", "ivh_v10_v90", "ivh_i10_i90", "ivh_auc")

#: Largest distance (in intensity units) of a "discrete" value from a whole grey level.
_DISCRETE_TOLERANCE = 1e-6


def ivh_metrics(values: np.ndarray, bin_width: float | None = None) -> dict[str, float]:
    """IBSI intensity-volume histogram features of the intensities of one ROI.

    Parameters
    ----------
    values : ndarray
        Intensities of the ROI voxels (any shape; all voxels are assumed to have the same
        volume, as on one image grid).
    bin_width : float, optional
        ``None`` (default): the values are already discrete grey levels one unit apart
        (IBSI's "discrete calibrated intensities", e.g. CT in HU, or the IBSI digital
        phantom). They are used as they are: the total range is
        ``G = [min(values), max(values)]`` with discretisation interval 1.

        A positive number: the values are continuous calibrated intensities such as SUV
        (IBSI's "continuous calibrated intensities"; the manual suggests 0.1 SUV for FDG).
        They are discretised with a fixed bin size, ``X_d = floor((X - X_min) / w) + 1``
        with ``X_min = min(values)``, and each voxel takes the intensity of its bin centre,
        ``X_min + (X_d - 0.5) w``; the discretisation interval is ``w``. ``G`` runs from the
        lowest bin centre, ``X_min + w/2``, to the centre of the highest occupied bin. (The
        manual writes the upper end as ``X_max - w/2``, which is that centre when ``X_max``
        is an unattained bin edge such as a re-segmentation bound; when ``X_max`` is the data
        maximum, as here, ``X_max - w/2`` lies below the centre of the bin that holds the
        maximum and would give that bin an intensity fraction above 1.)

    Returns
    -------
    dict
        :data:`IVH_COLUMNS` as floats: ``ivh_v10``, ``ivh_v90`` (volume fractions at 10 % and
        90 % intensity fraction), ``ivh_i10``, ``ivh_i90`` (intensities at 10 % and 90 %
        volume fraction, in the units of ``values``), ``ivh_v10_v90``, ``ivh_i10_i90`` and
        ``ivh_auc``.

    Notes
    -----
    ``I_x`` is searched on the grid of ``G`` extended by one interval above ``max G``, where
    no voxel lies (``nu = 0``); so when more than ``x %`` of the volume sits at the highest
    intensity, ``I_x`` is the intensity one interval above it instead of being undefined.
    When ``G`` is a single intensity the intensity fraction is undefined: ``V_x`` and
    ``ivh_v10_v90`` are NaN and ``ivh_auc`` is 0, as the manual prescribes. Work and memory
    grow with the number of intensities in ``G`` (the intensity range over ``bin_width``).

    Raises
    ------
    ValueError
        If ``values`` is empty or not finite, if ``bin_width`` is not positive, or if
        ``bin_width`` is ``None`` and the values are not whole grey levels apart.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("ivh_metrics needs at least one voxel intensity")
    if not np.all(np.isfinite(values)):
        raise ValueError("ivh_metrics: intensities must be finite (NaN or infinity found)")
    lowest = values.min()
    if bin_width is None:
        steps = values - lowest
        levels = np.rint(steps)
        if np.max(np.abs(steps - levels)) > _DISCRETE_TOLERANCE:
            raise ValueError("ivh_metrics: values are not discrete grey levels one unit apart; "
                             "pass bin_width for continuous intensities such as SUV")
        return _ivh_from_levels(levels.astype(np.int64), lowest, 1.0)
    if not bin_width > 0:
        raise ValueError(f"ivh_metrics: bin_width must be positive, got {bin_width}")
    bins = np.floor((values - lowest) / bin_width).astype(np.int64)  # IBSI's X_d - 1
    return _ivh_from_levels(bins, lowest + 0.5 * bin_width, float(bin_width))


def _ivh_from_levels(levels: np.ndarray, origin: float, interval: float) -> dict[str, float]:
    """IVH features from 0-based grid indices; index ``k`` has intensity ``origin + k * interval``."""
    n_voxels = levels.size
    top = int(levels.max())  # G spans indices 0..top; index top + 1 is the empty step above
    counts = np.bincount(levels, minlength=top + 2)
    at_least = np.cumsum(counts[::-1])[::-1]  # voxels with index >= k, for k = 0..top+1
    volume_fraction = at_least / n_voxels

    def volume_at(percent: int) -> float:
        # Smallest k with k / top >= percent / 100; nu does not increase with k, so its nu is
        # the largest volume fraction at that intensity fraction or above.
        if top == 0:
            return float("nan")
        return float(volume_fraction[-(-percent * top // 100)])

    def intensity_at(percent: int) -> float:
        # Lowest k with nu_k <= percent / 100, in integers: 100 * count <= percent * N.
        k = int(np.argmax(100 * at_least <= percent * n_voxels))
        return float(origin + k * interval)

    curve = volume_fraction[: top + 1]
    auc = float(np.sum(curve[1:] + curve[:-1]) / (2.0 * top)) if top > 0 else 0.0
    v10, v90 = volume_at(10), volume_at(90)
    i10, i90 = intensity_at(10), intensity_at(90)
    return {"ivh_v10": v10, "ivh_v90": v90, "ivh_i10": i10, "ivh_i90": i90,
            "ivh_v10_v90": v10 - v90, "ivh_i10_i90": i10 - i90, "ivh_auc": auc}
