"""Test-wide settings: plots render off-screen."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
