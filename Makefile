# Two commands set everything up: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export RADPIPE_DATA ?= $(abspath ../shared/data)
# pytest-friendly defaults for a 2-core machine
export OMP_NUM_THREADS ?= 1
export MPLBACKEND ?= Agg

.PHONY: install demo test test-all bench lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,survival,ibsi]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/radpipe demo --out demo_out

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "not bench"

bench: $(STAMP)
	$(BIN)/python -m pytest -q -s -m bench tests/benchmarks

lint: $(STAMP)
	$(BIN)/ruff check radpipe tests notebooks

clean:
	rm -rf $(VENV) demo_out *.egg-info .pytest_cache
