"""Validation statistics of a prognostic score on a cohort."""
