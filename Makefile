# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch, installed first when no torch is importable, so that pip
# never resolves a bare `torch` to a multi-GB CUDA build. An existing torch is kept.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test install bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test,plot]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m rnnkit demo --out runs/demo

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_engine.py

lint: install
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
