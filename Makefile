# Idempotent set-up: the venv is (re)built only when pyproject.toml changes.
# On this platform torch must come in first as the pinned pair, so pip takes the
# local wheel files instead of downloading several GB; pyproject keeps a loose range.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.skvlm-installed
TORCH_PAIR ?= torch==2.14.1 torchvision==0.29.1
OUT ?= demo_out

.PHONY: demo demo-quick lint test docs bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_PAIR)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m skvlm demo --out $(OUT)

demo-quick: $(STAMP)
	$(BIN)/python -m skvlm demo --quick --out $(OUT)

# ruff (pyproject [tool.ruff]) and the layering contracts (pyproject [tool.importlinter]),
# analysed on this checkout's sources.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=$(CURDIR) $(BIN)/lint-imports

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

docs: $(STAMP)
	$(BIN)/python -m sphinx -W -b html docs docs/_build/html

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script --small || exit 1; done

clean-venv:
	rm -rf $(VENV)
