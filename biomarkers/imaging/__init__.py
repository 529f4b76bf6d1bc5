"""Image-level operations: DICOM PET to SUV (:mod:`.suv`) and resampling between the PET and CT grids (:mod:`.resample`)."""
