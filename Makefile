# Set-up and everyday commands. `make test` and `make demo` create the virtual environment when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo ablation bench

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: $(STAMP)
	$(PY) -m scripts.demo

ablation: $(STAMP)
	$(PY) -m scripts.ablation

bench: $(STAMP)
	$(PY) -m bench.bench_make_patch
	$(PY) -m bench.bench_inference
	$(PY) -m bench.bench_train
