"""The frozen signature: a study's model with every per-patient step, and prediction for new patients."""
