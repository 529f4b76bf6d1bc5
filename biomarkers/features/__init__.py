"""Handcrafted lesion features: PET metrics, pyradiomics, per-subject aggregation."""
