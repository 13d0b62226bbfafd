# Set-up and everyday commands. `make test` and `make demo` create the virtual environment when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test lint demo ablation bench

ONNX_STAMP := $(VENV)/.installed-onnx

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# The optional ONNX path (export and onnxruntime backend), tested by the suite
$(ONNX_STAMP): $(STAMP) requirements-onnx.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-onnx.txt
	touch $(ONNX_STAMP)

test: $(STAMP) $(ONNX_STAMP)
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
	$(PY) -m bench.bench_photo
