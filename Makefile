# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
# Run every tool from the virtual environment, so Snakemake's shell rules find `biomarkers`.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/demo/report.html
	@$(BIN)/python -c "import pandas as pd; print(pd.read_csv('results/demo/report/metrics.tsv', sep='\t').to_string(index=False, na_rep='', float_format=lambda v: f'{v:.4g}'))"
	@echo "report: $(CURDIR)/results/demo/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/snakemake --lint --cores 1

bench: $(STAMP)
	$(BIN)/python bench/stage_times.py results/demo
	$(BIN)/python bench/feature_extraction.py results/demo

clean:
	rm -rf results .snakemake
