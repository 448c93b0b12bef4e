# modelstore — developer tasks.  `make test` is what CI runs (see .ci/run).

PYTHON      ?= python3
VENV        ?= .venv
VENV_PY     := $(VENV)/bin/python
VENV_PIP    := $(VENV)/bin/pip
ARGS        ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := test
.PHONY: venv demo test clean distclean

# The stamp is rebuilt (and the package reinstalled) whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV_PIP) install --upgrade pip
	$(VENV_PIP) install -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/modelstore demo $(ARGS)

test: venv
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

# Build artefacts and caches; `make distclean` also removes the virtualenv.
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .ruff_cache .mypy_cache .coverage htmlcov
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
