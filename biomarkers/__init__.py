"""PET/CT radiomics and deep-biomarker survival pipeline."""
__version__ = "0.1.0"
