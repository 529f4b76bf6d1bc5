"""Lesion segmentation: the threshold family (:mod:`~biomarkers.segment.threshold`), the 3D U-Net's
training and inference (:mod:`~biomarkers.segment.unet_train`, :mod:`~biomarkers.segment.unet_infer`,
settings in :mod:`~biomarkers.segment.unet_settings`), one subject's segmentation
(:mod:`~biomarkers.segment.run`) and the methods' comparison against reference masks."""
