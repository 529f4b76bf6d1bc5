"""``python -m biomarkers`` runs the command line."""
from biomarkers.cli import main

main()
