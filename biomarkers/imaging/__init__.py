"""Image-level operations: resampling between the PET and CT grids."""
