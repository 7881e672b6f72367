# Two commands are the whole set-up on a machine with only Python 3 and pip:
#   make speedup   -> creates .venv, installs the package, runs the speedup verification
#   make test      -> creates .venv, installs the package with its test extra, runs the suite
#   make report    -> the paper kit: every figure and table of the study under report/
#   make lint      -> ruff (pyflakes, pycodestyle, isort, bugbear; configured in pyproject.toml)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARGS   ?=

.PHONY: speedup report test lint install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

speedup: install
	MPLBACKEND=Agg $(PY) -m verification.speedup --n 4 8 16 32 $(ARGS)

report: install
	MPLBACKEND=Agg $(PY) -m verification.report $(ARGS)

test: install-test
	MPLBACKEND=Agg $(PY) -m pytest $(ARGS)

lint: install-test
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis results report
