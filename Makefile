# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
# Run every tool from the virtual environment, so Snakemake's shell rules find `biomarkers`.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test test-fast test-slurm lint bench scale clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/demo/report.html
	@$(BIN)/python -c "import pandas as pd; t = pd.read_csv('results/demo/report/headline.tsv', sep='\t', keep_default_na=False); print(t[t['cohort'] != 'train'].to_string(index=False))"
	@echo "all metrics: results/demo/report/metrics.tsv; cross-validation on the training cohort: results/demo/models/cv_summary.tsv"
	@echo "report: $(CURDIR)/results/demo/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest

# The inner loop: everything but the tests marked slow (full workflow runs, network training).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

# The tiny study through Slurm on a single-node cluster started here (root; Debian's packages).
test-slurm: $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[slurm]'
	.ci/test-slurm

lint: $(STAMP)
	$(BIN)/snakemake --lint --cores 1

bench: $(STAMP)
	$(BIN)/python bench/stage_times.py results/demo
	$(BIN)/python bench/feature_extraction.py results/demo

scale: $(STAMP)
	$(BIN)/python bench/scale.py

clean:
	rm -rf results .snakemake
