"""The IBSI digital phantom and its reference values (data only; the tests are in test_ibsi.py).

Source: Zwanenburg et al., "The Image Biomarker Standardisation Initiative", reference manual,
arXiv:1612.07003 (also https://ibsi.readthedocs.io, source github.com/theibsi/ibsi-doc):
chapter "Reference data sets", section "Digital phantom" (figure "test volume"), and the
"dig. phantom" rows of the benchmark tables of chapter 3 "Image features". Section numbers
below are those of chapter 3 of the manual. The phantom itself is published as NIfTI in
github.com/theibsi/data_sets (ibsi_1_digital_phantom). The voxel values and mask below were
transcribed from a public listing of that phantom (github.com/PolusAI/nyxus,
tests/test_data.h, converted from the data_sets DICOM) and agree with the manual's figure;
they reproduce the ROI's voxel count (74 voxels = 592 mm3), mean 2.15, variance 3.05,
skewness 1.08 and excess kurtosis -0.355 (checked in test_ibsi.py), and the mesh, texture
and intensity peak values of the tables below.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: Voxel spacing of the phantom in mm, (z, y, x) and (x, y, z) alike.
SPACING_MM = (2.0, 2.0, 2.0)

#: Grey levels of the 5 x 4 x 4 (x, y, z) phantom as an array (z, y, x): one 4 x 5 block per
#: slice, y down the rows, x along the columns. Levels 2 and 5 are absent from the ROI. The 9
#: is the excluded voxel inside the ROI; it counts for the intensity peaks, which average
#: every image voxel in the sphere.
PHANTOM = np.array([
    [[4, 4, 6, 4, 1],
     [4, 4, 6, 1, 1],
     [1, 1, 6, 1, 1],
     [1, 1, 6, 1, 1]],
    [[4, 1, 6, 4, 1],
     [1, 1, 3, 1, 1],
     [1, 1, 9, 1, 1],
     [1, 1, 1, 1, 1]],
    [[1, 4, 6, 1, 1],
     [1, 1, 6, 1, 1],
     [1, 1, 1, 1, 1],
     [1, 1, 1, 1, 1]],
    [[1, 4, 4, 1, 1],
     [1, 4, 4, 1, 1],
     [1, 4, 4, 1, 1],
     [1, 4, 4, 1, 1]],
], dtype=np.int16)

#: ROI mask (z, y, x): 1 inside. Six voxels are excluded: one inside the volume (the 9), one
#: on the edge of the second slice, four in a corner of the last slice.
MASK = np.ones(PHANTOM.shape, dtype=np.uint8)
MASK[1, 1, 0] = 0
MASK[1, 2, 2] = 0
MASK[3, 2:4, 3:5] = 0

#: Number of ROI voxels.
N_VOXELS = int(MASK.sum())


def write_phantom(directory: str | Path) -> tuple[Path, Path]:
    """Write the phantom and its mask as NIfTI files with 2 mm voxels.

    Returns
    -------
    image_path, mask_path : Path
        ``ibsi_phantom.nii.gz`` (32-bit float grey levels) and ``ibsi_phantom_mask.nii.gz``
        (8-bit labels, 1 = ROI) in ``directory``.
    """
    directory = Path(directory)
    paths = directory / "ibsi_phantom.nii.gz", directory / "ibsi_phantom_mask.nii.gz"
    for array, path in zip((PHANTOM.astype(np.float32), MASK), paths):
        image = sitk.GetImageFromArray(array)  # takes (z, y, x)
        image.SetSpacing(SPACING_MM)
        sitk.WriteImage(image, str(path))
    return paths


def _rounding_tolerance(value: float) -> float:
    """Half a unit of the third significant digit of ``value``.

    The manual gives the digital phantom's values without a tolerance (they were derived by
    hand) and rounds reference values to three significant digits; a value that rounds to
    the published one is accepted.
    """
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - 2)


# (IBSI tag, manual section, IBSI name, value, tolerance or None where the table has none).
# Texture rows are the digital phantom's "3D, averaged" (GLCM, GLRLM) or "3D" (GLSZM, NGTDM,
# NGLDM) values: one matrix per direction, features averaged over the 13 directions.
_TABLE = [
    ("morph_volume", "3.1.1", "volume (mesh)", 556, 4),
    ("morph_vol_approx", "3.1.2", "volume (voxel counting)", 592, 4),
    ("morph_area_mesh", "3.1.3", "surface area (mesh)", 388, 3),
    ("morph_av", "3.1.4", "surface to volume ratio", 0.698, 0.004),
    ("morph_sphericity", "3.1.8", "sphericity", 0.843, 0.005),
    ("morph_diam", "3.1.11", "maximum 3D diameter", 13.1, 0.1),
    ("morph_pca_maj_axis", "3.1.12", "major axis length", 11.4, 0.1),
    ("morph_pca_min_axis", "3.1.13", "minor axis length", 9.31, 0.06),
    ("morph_pca_least_axis", "3.1.14", "least axis length", 8.54, 0.05),
    ("morph_pca_elongation", "3.1.15", "elongation", 0.816, 0.005),
    ("morph_pca_flatness", "3.1.16", "flatness", 0.749, 0.005),
    ("morph_integ_int", "3.1.27", "integrated intensity", 1.2e3, 10),
    ("loc_peak_loc", "3.2.1", "local intensity peak", 2.6, None),
    ("loc_peak_glob", "3.2.2", "global intensity peak", 3.1, None),
    ("stat_mean", "3.3.1", "mean intensity", 2.15, None),
    ("stat_var", "3.3.2", "intensity variance", 3.05, None),
    ("stat_skew", "3.3.3", "intensity skewness", 1.08, None),
    ("stat_kurt", "3.3.4", "(excess) intensity kurtosis", -0.355, None),
    ("stat_median", "3.3.5", "median intensity", 1, None),
    ("stat_min", "3.3.6", "minimum intensity", 1, None),
    ("stat_p10", "3.3.7", "10th intensity percentile", 1, None),
    ("stat_p90", "3.3.8", "90th intensity percentile", 4, None),
    ("stat_max", "3.3.9", "maximum intensity", 6, None),
    ("stat_iqr", "3.3.10", "intensity interquartile range", 3, None),
    ("stat_range", "3.3.11", "intensity range", 5, None),
    ("stat_mad", "3.3.12", "intensity-based mean absolute deviation", 1.55, None),
    ("stat_rmad", "3.3.13", "intensity-based robust mean absolute deviation", 1.11, None),
    ("stat_energy", "3.3.17", "intensity-based energy", 567, None),
    ("stat_rms", "3.3.18", "root mean square intensity", 2.77, None),
    ("ih_entropy", "3.4.18", "discretised intensity entropy", 1.27, None),
    ("ih_uniformity", "3.4.19", "discretised intensity uniformity", 0.512, None),
    ("ivh_v10", "3.5.1", "volume at intensity fraction 10 %", 0.324, None),
    ("ivh_v90", "3.5.1", "volume at intensity fraction 90 %", 0.0946, None),
    ("ivh_i10", "3.5.2", "intensity at volume fraction 10 %", 5, None),
    ("ivh_i90", "3.5.2", "intensity at volume fraction 90 %", 2, None),
    ("ivh_diff_v10_v90", "3.5.3", "volume fraction difference V10 - V90", 0.23, None),
    ("ivh_diff_i10_i90", "3.5.4", "intensity difference I10 - I90", 3, None),
    ("ivh_auc", "3.5.5", "area under the IVH curve", 0.32, None),
    ("cm_joint_max_3D_avg", "3.6.1", "GLCM joint maximum", 0.503, None),
    ("cm_joint_avg_3D_avg", "3.6.2", "GLCM joint average", 2.14, None),
    ("cm_joint_var_3D_avg", "3.6.3", "GLCM joint variance", 3.1, None),
    ("cm_joint_entr_3D_avg", "3.6.4", "GLCM joint entropy", 2.4, None),
    ("cm_diff_avg_3D_avg", "3.6.5", "GLCM difference average", 1.43, None),
    ("cm_diff_var_3D_avg", "3.6.6", "GLCM difference variance", 3.06, None),
    ("cm_diff_entr_3D_avg", "3.6.7", "GLCM difference entropy", 1.56, None),
    ("cm_sum_avg_3D_avg", "3.6.8", "GLCM sum average", 4.29, None),
    ("cm_sum_var_3D_avg", "3.6.9", "GLCM sum variance", 7.07, None),
    ("cm_sum_entr_3D_avg", "3.6.10", "GLCM sum entropy", 1.92, None),
    ("cm_energy_3D_avg", "3.6.11", "GLCM angular second moment", 0.303, None),
    ("cm_contrast_3D_avg", "3.6.12", "GLCM contrast", 5.32, None),
    ("cm_dissimilarity_3D_avg", "3.6.13", "GLCM dissimilarity", 1.43, None),
    ("cm_inv_diff_3D_avg", "3.6.14", "GLCM inverse difference", 0.677, None),
    ("cm_inv_diff_norm_3D_avg", "3.6.15", "GLCM normalised inverse difference", 0.851, None),
    ("cm_inv_diff_mom_3D_avg", "3.6.16", "GLCM inverse difference moment", 0.618, None),
    ("cm_inv_diff_mom_norm_3D_avg", "3.6.17", "GLCM normalised inverse difference moment", 0.898, None),
    ("cm_inv_var_3D_avg", "3.6.18", "GLCM inverse variance", 0.0604, None),
    ("cm_corr_3D_avg", "3.6.19", "GLCM correlation", 0.157, None),
    ("cm_auto_corr_3D_avg", "3.6.20", "GLCM autocorrelation", 5.06, None),
    ("cm_clust_tend_3D_avg", "3.6.21", "GLCM cluster tendency", 7.07, None),
    ("cm_clust_shade_3D_avg", "3.6.22", "GLCM cluster shade", 16.6, None),
    ("cm_clust_prom_3D_avg", "3.6.23", "GLCM cluster prominence", 145, None),
    ("cm_info_corr1_3D_avg", "3.6.24", "GLCM information correlation 1", -0.157, None),
    ("cm_info_corr2_3D_avg", "3.6.25", "GLCM information correlation 2", 0.52, None),
    ("rlm_sre_3D_avg", "3.7.1", "GLRLM short runs emphasis", 0.705, None),
    ("rlm_lre_3D_avg", "3.7.2", "GLRLM long runs emphasis", 3.06, None),
    ("rlm_lgre_3D_avg", "3.7.3", "GLRLM low grey level run emphasis", 0.603, None),
    ("rlm_hgre_3D_avg", "3.7.4", "GLRLM high grey level run emphasis", 9.7, None),
    ("rlm_srlge_3D_avg", "3.7.5", "GLRLM short run low grey level emphasis", 0.352, None),
    ("rlm_srhge_3D_avg", "3.7.6", "GLRLM short run high grey level emphasis", 8.54, None),
    ("rlm_lrlge_3D_avg", "3.7.7", "GLRLM long run low grey level emphasis", 2.39, None),
    ("rlm_lrhge_3D_avg", "3.7.8", "GLRLM long run high grey level emphasis", 17.6, None),
    ("rlm_glnu_3D_avg", "3.7.9", "GLRLM grey level non-uniformity", 21.8, None),
    ("rlm_glnu_norm_3D_avg", "3.7.10", "GLRLM normalised grey level non-uniformity", 0.43, None),
    ("rlm_rlnu_3D_avg", "3.7.11", "GLRLM run length non-uniformity", 26.9, None),
    ("rlm_rlnu_norm_3D_avg", "3.7.12", "GLRLM normalised run length non-uniformity", 0.513, None),
    ("rlm_r_perc_3D_avg", "3.7.13", "GLRLM run percentage", 0.68, None),
    ("rlm_gl_var_3D_avg", "3.7.14", "GLRLM grey level variance", 3.46, None),
    ("rlm_rl_var_3D_avg", "3.7.15", "GLRLM run length variance", 0.574, None),
    ("rlm_rl_entr_3D_avg", "3.7.16", "GLRLM run entropy", 2.43, None),
    # 3.8.1 small zone emphasis: the ibsi-doc table for it is missing from the chapter source
    # consulted, so it has no reference value here.
    ("szm_lze_3D", "3.8.2", "GLSZM large zone emphasis", 550, None),
    ("szm_lgze_3D", "3.8.3", "GLSZM low grey level zone emphasis", 0.253, None),
    ("szm_hgze_3D", "3.8.4", "GLSZM high grey level zone emphasis", 15.6, None),
    ("szm_szlge_3D", "3.8.5", "GLSZM small zone low grey level emphasis", 0.0256, None),
    ("szm_szhge_3D", "3.8.6", "GLSZM small zone high grey level emphasis", 2.76, None),
    ("szm_lzlge_3D", "3.8.7", "GLSZM large zone low grey level emphasis", 503, None),
    ("szm_lzhge_3D", "3.8.8", "GLSZM large zone high grey level emphasis", 1.49e3, None),
    ("szm_glnu_3D", "3.8.9", "GLSZM grey level non-uniformity", 1.4, None),
    ("szm_glnu_norm_3D", "3.8.10", "GLSZM normalised grey level non-uniformity", 0.28, None),
    ("szm_zsnu_3D", "3.8.11", "GLSZM zone size non-uniformity", 1, None),
    ("szm_zsnu_norm_3D", "3.8.12", "GLSZM normalised zone size non-uniformity", 0.2, None),
    ("szm_z_perc_3D", "3.8.13", "GLSZM zone percentage", 0.0676, None),
    ("szm_gl_var_3D", "3.8.14", "GLSZM grey level variance", 2.64, None),
    ("szm_zs_var_3D", "3.8.15", "GLSZM zone size variance", 331, None),
    ("szm_zs_entr_3D", "3.8.16", "GLSZM zone size entropy", 2.32, None),
    ("ngt_coarseness_3D", "3.10.1", "NGTDM coarseness", 0.0296, None),
    ("ngt_contrast_3D", "3.10.2", "NGTDM contrast", 0.584, None),
    ("ngt_busyness_3D", "3.10.3", "NGTDM busyness", 6.54, None),
    ("ngt_complexity_3D", "3.10.4", "NGTDM complexity", 13.5, None),
    ("ngt_strength_3D", "3.10.5", "NGTDM strength", 0.763, None),
    ("ngl_lde_3D", "3.11.1", "NGLDM low dependence emphasis", 0.045, None),
    ("ngl_hde_3D", "3.11.2", "NGLDM high dependence emphasis", 109, None),
    ("ngl_lgce_3D", "3.11.3", "NGLDM low grey level count emphasis", 0.693, None),
    ("ngl_hgce_3D", "3.11.4", "NGLDM high grey level count emphasis", 7.66, None),
    ("ngl_ldlge_3D", "3.11.5", "NGLDM low dependence low grey level emphasis", 0.00963, None),
    ("ngl_ldhge_3D", "3.11.6", "NGLDM low dependence high grey level emphasis", 0.736, None),
    ("ngl_hdlge_3D", "3.11.7", "NGLDM high dependence low grey level emphasis", 102, None),
    ("ngl_hdhge_3D", "3.11.8", "NGLDM high dependence high grey level emphasis", 235, None),
    ("ngl_glnu_3D", "3.11.9", "NGLDM grey level non-uniformity", 37.9, None),
    ("ngl_dcnu_3D", "3.11.11", "NGLDM dependence count non-uniformity", 4.86, None),
    ("ngl_dcnu_norm_3D", "3.11.12", "NGLDM normalised dependence count non-uniformity", 0.0657, None),
    ("ngl_gl_var_3D", "3.11.14", "NGLDM grey level variance", 3.05, None),
    ("ngl_dc_var_3D", "3.11.15", "NGLDM dependence count variance", 22.1, None),
    ("ngl_dc_entr_3D", "3.11.16", "NGLDM dependence count entropy", 4.4, None),
]

#: IBSI tag -> (reference value, tolerance) for the digital phantom.
REFERENCE: dict[str, tuple[float, float]] = {
    tag: (float(value), float(tol) if tol is not None else _rounding_tolerance(value))
    for tag, _, _, value, tol in _TABLE
}

#: IBSI tags whose tolerance is the rounding one (the manual's table gives none).
ROUNDED = frozenset(tag for tag, _, _, _, tol in _TABLE if tol is None)

#: IBSI tag -> (manual section, IBSI feature name).
NAMES: dict[str, tuple[str, str]] = {tag: (section, name) for tag, section, name, _, _ in _TABLE}

_AVERAGED = "pyradiomics averages the 13 directional matrices' features: IBSI '3D, averaged'"
_NGLDM = "pyradiomics' GLDM with gldm_a 0 is IBSI's NGLDM (Chebyshev 1, alpha 0)"
_PCA = ("pyradiomics divides the voxel-centre covariance by N, IBSI's values by N - 1: "
        "axes sqrt((N - 1) / N) = 0.7 % shorter")

#: IBSI tag -> (pyradiomics column, expected status, note). "agrees": within the IBSI
#: tolerance on the phantom; "differs": outside it, for the reason given. Established by
#: running pyradiomics (pyradiomics-bhklab 3.1) with ibsi_phantom_params.yaml.
PYRADIOMICS: dict[str, tuple[str, str, str]] = {
    "morph_volume": ("original_shape_MeshVolume", "agrees", ""),
    "morph_vol_approx": ("original_shape_VoxelVolume", "agrees", ""),
    "morph_area_mesh": ("original_shape_SurfaceArea", "agrees", ""),
    "morph_av": ("original_shape_SurfaceVolumeRatio", "agrees", ""),
    "morph_sphericity": ("original_shape_Sphericity", "agrees", ""),
    "morph_diam": ("original_shape_Maximum3DDiameter", "agrees", ""),
    "morph_pca_maj_axis": ("original_shape_MajorAxisLength", "agrees",
                           "within tolerance, but " + _PCA),
    "morph_pca_min_axis": ("original_shape_MinorAxisLength", "differs", _PCA),
    "morph_pca_least_axis": ("original_shape_LeastAxisLength", "differs", _PCA),
    "morph_pca_elongation": ("original_shape_Elongation", "agrees", "a ratio of axes: the factor cancels"),
    "morph_pca_flatness": ("original_shape_Flatness", "agrees", "a ratio of axes: the factor cancels"),
    "stat_mean": ("original_firstorder_Mean", "agrees", ""),
    "stat_var": ("original_firstorder_Variance", "agrees", ""),
    "stat_skew": ("original_firstorder_Skewness", "agrees", ""),
    "stat_kurt": ("original_firstorder_Kurtosis", "differs",
                  "pyradiomics reports kurtosis, IBSI excess kurtosis (kurtosis - 3)"),
    "stat_median": ("original_firstorder_Median", "agrees", ""),
    "stat_min": ("original_firstorder_Minimum", "agrees", ""),
    "stat_p10": ("original_firstorder_10Percentile", "agrees", ""),
    "stat_p90": ("original_firstorder_90Percentile", "agrees",
                 "numpy's linear interpolation; IBSI fixes no percentile method (some tools give 4.2)"),
    "stat_max": ("original_firstorder_Maximum", "agrees", ""),
    "stat_iqr": ("original_firstorder_InterquartileRange", "agrees", ""),
    "stat_range": ("original_firstorder_Range", "agrees", ""),
    "stat_mad": ("original_firstorder_MeanAbsoluteDeviation", "agrees", ""),
    "stat_rmad": ("original_firstorder_RobustMeanAbsoluteDeviation", "agrees", ""),
    "stat_energy": ("original_firstorder_Energy", "agrees", "voxelArrayShift 0 (pyradiomics' default shift is 0 too)"),
    "stat_rms": ("original_firstorder_RootMeanSquared", "agrees", ""),
    "ih_entropy": ("original_firstorder_Entropy", "agrees", "on the binned image (binWidth 1)"),
    "ih_uniformity": ("original_firstorder_Uniformity", "agrees", "on the binned image (binWidth 1)"),
    "cm_joint_max_3D_avg": ("original_glcm_MaximumProbability", "agrees", _AVERAGED),
    "cm_joint_avg_3D_avg": ("original_glcm_JointAverage", "agrees", _AVERAGED),
    "cm_joint_var_3D_avg": ("original_glcm_SumSquares", "agrees", _AVERAGED),
    "cm_joint_entr_3D_avg": ("original_glcm_JointEntropy", "agrees", _AVERAGED),
    "cm_diff_avg_3D_avg": ("original_glcm_DifferenceAverage", "agrees", _AVERAGED),
    "cm_diff_var_3D_avg": ("original_glcm_DifferenceVariance", "agrees", _AVERAGED),
    "cm_diff_entr_3D_avg": ("original_glcm_DifferenceEntropy", "agrees", _AVERAGED),
    "cm_sum_avg_3D_avg": ("original_glcm_SumAverage", "agrees", _AVERAGED),
    "cm_sum_var_3D_avg": ("original_glcm_ClusterTendency", "agrees", "sum variance = cluster tendency"),
    "cm_sum_entr_3D_avg": ("original_glcm_SumEntropy", "agrees", _AVERAGED),
    "cm_energy_3D_avg": ("original_glcm_JointEnergy", "agrees", _AVERAGED),
    "cm_contrast_3D_avg": ("original_glcm_Contrast", "agrees", _AVERAGED),
    "cm_dissimilarity_3D_avg": ("original_glcm_DifferenceAverage", "agrees", "dissimilarity = difference average"),
    "cm_inv_diff_3D_avg": ("original_glcm_Id", "agrees", _AVERAGED),
    "cm_inv_diff_norm_3D_avg": ("original_glcm_Idn", "agrees", _AVERAGED),
    "cm_inv_diff_mom_3D_avg": ("original_glcm_Idm", "agrees", _AVERAGED),
    "cm_inv_diff_mom_norm_3D_avg": ("original_glcm_Idmn", "agrees", _AVERAGED),
    "cm_inv_var_3D_avg": ("original_glcm_InverseVariance", "agrees", _AVERAGED),
    "cm_corr_3D_avg": ("original_glcm_Correlation", "agrees", _AVERAGED),
    "cm_auto_corr_3D_avg": ("original_glcm_Autocorrelation", "agrees", _AVERAGED),
    "cm_clust_tend_3D_avg": ("original_glcm_ClusterTendency", "agrees", _AVERAGED),
    "cm_clust_shade_3D_avg": ("original_glcm_ClusterShade", "agrees", _AVERAGED),
    "cm_clust_prom_3D_avg": ("original_glcm_ClusterProminence", "agrees", _AVERAGED),
    "cm_info_corr1_3D_avg": ("original_glcm_Imc1", "agrees", _AVERAGED),
    "cm_info_corr2_3D_avg": ("original_glcm_Imc2", "agrees", _AVERAGED),
    "rlm_sre_3D_avg": ("original_glrlm_ShortRunEmphasis", "agrees", _AVERAGED),
    "rlm_lre_3D_avg": ("original_glrlm_LongRunEmphasis", "agrees", _AVERAGED),
    "rlm_lgre_3D_avg": ("original_glrlm_LowGrayLevelRunEmphasis", "agrees", _AVERAGED),
    "rlm_hgre_3D_avg": ("original_glrlm_HighGrayLevelRunEmphasis", "agrees", _AVERAGED),
    "rlm_srlge_3D_avg": ("original_glrlm_ShortRunLowGrayLevelEmphasis", "agrees", _AVERAGED),
    "rlm_srhge_3D_avg": ("original_glrlm_ShortRunHighGrayLevelEmphasis", "agrees", _AVERAGED),
    "rlm_lrlge_3D_avg": ("original_glrlm_LongRunLowGrayLevelEmphasis", "agrees", _AVERAGED),
    "rlm_lrhge_3D_avg": ("original_glrlm_LongRunHighGrayLevelEmphasis", "agrees", _AVERAGED),
    "rlm_glnu_3D_avg": ("original_glrlm_GrayLevelNonUniformity", "agrees", _AVERAGED),
    "rlm_glnu_norm_3D_avg": ("original_glrlm_GrayLevelNonUniformityNormalized", "agrees", _AVERAGED),
    "rlm_rlnu_3D_avg": ("original_glrlm_RunLengthNonUniformity", "agrees", _AVERAGED),
    "rlm_rlnu_norm_3D_avg": ("original_glrlm_RunLengthNonUniformityNormalized", "agrees", _AVERAGED),
    "rlm_r_perc_3D_avg": ("original_glrlm_RunPercentage", "agrees", _AVERAGED),
    "rlm_gl_var_3D_avg": ("original_glrlm_GrayLevelVariance", "agrees", _AVERAGED),
    "rlm_rl_var_3D_avg": ("original_glrlm_RunVariance", "agrees", _AVERAGED),
    "rlm_rl_entr_3D_avg": ("original_glrlm_RunEntropy", "agrees", _AVERAGED),
    "szm_lze_3D": ("original_glszm_LargeAreaEmphasis", "agrees", ""),
    "szm_lgze_3D": ("original_glszm_LowGrayLevelZoneEmphasis", "agrees", ""),
    "szm_hgze_3D": ("original_glszm_HighGrayLevelZoneEmphasis", "agrees", ""),
    "szm_szlge_3D": ("original_glszm_SmallAreaLowGrayLevelEmphasis", "agrees", ""),
    "szm_szhge_3D": ("original_glszm_SmallAreaHighGrayLevelEmphasis", "agrees", ""),
    "szm_lzlge_3D": ("original_glszm_LargeAreaLowGrayLevelEmphasis", "agrees", ""),
    "szm_lzhge_3D": ("original_glszm_LargeAreaHighGrayLevelEmphasis", "agrees", ""),
    "szm_glnu_3D": ("original_glszm_GrayLevelNonUniformity", "agrees", ""),
    "szm_glnu_norm_3D": ("original_glszm_GrayLevelNonUniformityNormalized", "agrees", ""),
    "szm_zsnu_3D": ("original_glszm_SizeZoneNonUniformity", "agrees", ""),
    "szm_zsnu_norm_3D": ("original_glszm_SizeZoneNonUniformityNormalized", "agrees", ""),
    "szm_z_perc_3D": ("original_glszm_ZonePercentage", "agrees", ""),
    "szm_gl_var_3D": ("original_glszm_GrayLevelVariance", "agrees", ""),
    "szm_zs_var_3D": ("original_glszm_ZoneVariance", "agrees", ""),
    "szm_zs_entr_3D": ("original_glszm_ZoneEntropy", "agrees", ""),
    "ngt_coarseness_3D": ("original_ngtdm_Coarseness", "agrees", ""),
    "ngt_contrast_3D": ("original_ngtdm_Contrast", "agrees", ""),
    "ngt_busyness_3D": ("original_ngtdm_Busyness", "agrees", ""),
    "ngt_complexity_3D": ("original_ngtdm_Complexity", "agrees", ""),
    "ngt_strength_3D": ("original_ngtdm_Strength", "agrees", ""),
    "ngl_lde_3D": ("original_gldm_SmallDependenceEmphasis", "agrees", _NGLDM),
    "ngl_hde_3D": ("original_gldm_LargeDependenceEmphasis", "agrees", _NGLDM),
    "ngl_lgce_3D": ("original_gldm_LowGrayLevelEmphasis", "agrees", _NGLDM),
    "ngl_hgce_3D": ("original_gldm_HighGrayLevelEmphasis", "agrees", _NGLDM),
    "ngl_ldlge_3D": ("original_gldm_SmallDependenceLowGrayLevelEmphasis", "agrees", _NGLDM),
    "ngl_ldhge_3D": ("original_gldm_SmallDependenceHighGrayLevelEmphasis", "agrees", _NGLDM),
    "ngl_hdlge_3D": ("original_gldm_LargeDependenceLowGrayLevelEmphasis", "agrees", _NGLDM),
    "ngl_hdhge_3D": ("original_gldm_LargeDependenceHighGrayLevelEmphasis", "agrees", _NGLDM),
    "ngl_glnu_3D": ("original_gldm_GrayLevelNonUniformity", "agrees", _NGLDM),
    "ngl_dcnu_3D": ("original_gldm_DependenceNonUniformity", "agrees", _NGLDM),
    "ngl_dcnu_norm_3D": ("original_gldm_DependenceNonUniformityNormalized", "agrees", _NGLDM),
    "ngl_gl_var_3D": ("original_gldm_GrayLevelVariance", "agrees", _NGLDM),
    "ngl_dc_var_3D": ("original_gldm_DependenceVariance", "agrees", _NGLDM),
    "ngl_dc_entr_3D": ("original_gldm_DependenceEntropy", "agrees", _NGLDM),
}

_PCA_FACTOR = math.sqrt(N_VOXELS / (N_VOXELS - 1))

#: IBSI tag -> function turning pyradiomics' value into IBSI's definition, for deviations
#: that are a known transform (the tests check the transformed value against IBSI's).
PYRADIOMICS_TRANSFORMS = {
    "stat_kurt": lambda value: value - 3.0,
    "morph_pca_maj_axis": lambda value: value * _PCA_FACTOR,
    "morph_pca_min_axis": lambda value: value * _PCA_FACTOR,
    "morph_pca_least_axis": lambda value: value * _PCA_FACTOR,
}

#: IBSI tag -> (our column, factor to IBSI's unit, expected status, note) for the PET metrics
#: of biomarkers.features.pet.pet_metrics and the IVH of biomarkers.features.ivh.ivh_metrics.
OURS: dict[str, tuple[str, float, str, str]] = {
    "loc_peak_loc": ("suv_peak", 1.0, "agrees", "1 cm3 sphere, highest mean among maximum voxels"),
    "loc_peak_glob": ("suv_peak_global", 1.0, "agrees", "1 cm3 sphere around every ROI voxel"),
    "stat_mean": ("suv_mean", 1.0, "agrees", ""),
    "stat_max": ("suv_max", 1.0, "agrees", ""),
    "morph_vol_approx": ("mtv_ml", 1000.0, "agrees", "ml -> mm3"),
    "morph_integ_int": ("tlg", 1000.0, "differs",
                        "TLG = SUVmean x voxel-counting volume (PET convention); IBSI's "
                        "integrated intensity uses the mesh volume"),
    "ivh_v10": ("ivh_v10", 1.0, "agrees", ""),
    "ivh_v90": ("ivh_v90", 1.0, "agrees", ""),
    "ivh_i10": ("ivh_i10", 1.0, "agrees", ""),
    "ivh_i90": ("ivh_i90", 1.0, "agrees", ""),
    "ivh_diff_v10_v90": ("ivh_v10_v90", 1.0, "agrees", ""),
    "ivh_diff_i10_i90": ("ivh_i10_i90", 1.0, "agrees", ""),
    "ivh_auc": ("ivh_auc", 1.0, "agrees", ""),
}
