"""Survival models fitted on a training feature table and frozen to a model directory."""
