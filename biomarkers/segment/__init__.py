"""Lesion segmentation: threshold family (and, later, a 3D U-Net)."""
from biomarkers.segment.threshold import METHODS, segment_lesions

__all__ = ["METHODS", "segment_lesions"]
