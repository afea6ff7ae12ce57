# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The CPU build of PyTorch, installed first when no torch is importable, so that pip
# never resolves a bare `torch` to a multi-GB CUDA build. An existing torch is kept.
TORCH_PIN ?= torch==2.13.0
# Triton (the "gpu" extra) is installed apart: its wheel is large and missing on some
# platforms, where the install goes on and the Triton kernel tests are skipped.

.PHONY: demo vanishing test install bench bench-charlm lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test,plot,text]"
	$(PY) -m pip install -q "triton>=3.0" || echo "triton not installed: tests/test_triton_kernels.py will be skipped"
	touch $@

install: $(VENV)/.installed

# The main job: a character LSTM language model on Shakespeare, about three minutes on
# two cores. Each `make demo` starts afresh in runs/demo.
demo: install
	rm -rf runs/demo
	$(PY) -m rnnkit train charlm --out runs/demo

# Vanishing gradients: a plain RNN against an LSTM, and the gradient-flow plot.
vanishing: install
	$(PY) -m rnnkit vanishing --out runs/vanishing

test: install
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/bench_engine.py

bench-charlm: install
	$(PY) benchmarks/bench_charlm.py

lint: install
	$(PY) -m pip install -q ruff && $(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
