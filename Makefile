# modelstore — developer tasks.  `make test` is what CI runs (see .ci/run).

PYTHON      ?= python3
VENV        ?= .venv
VENV_PY     := $(VENV)/bin/python
VENV_PIP    := $(VENV)/bin/pip
ARGS        ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := test
.PHONY: venv demo test clean distclean

# Say which PostgreSQL the command uses, and why: a DSN, the system's server binaries, or a wheel that ships
# PostgreSQL. Where there are no server binaries (or MODELSTORE_PG_BIN=none hides them), first install the
# `embedded` extra (that wheel) into $(VENV). `python -m modelstore.server` exits 3 when binaries are needed.
define use_server
	@$(VENV_PY) -m modelstore.server --for $(1); status=$$?; \
	if [ $$status -eq 3 ]; then \
	    echo "make: installing the embedded extra into $(VENV): $(VENV_PIP) install -e '.[test,embedded]'"; \
	    $(VENV_PIP) install -q -e '.[test,embedded]' || { \
	        echo "make: could not install the embedded extra: install the PostgreSQL server binaries, or set MODELSTORE_DSN"; \
	        exit 1; }; \
	    $(VENV_PY) -m modelstore.server --for $(1); \
	else exit $$status; fi
endef

# The stamp is rebuilt (and the package reinstalled) whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV_PIP) install --upgrade pip
	$(VENV_PIP) install -e '.[test]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(call use_server,demo)
	$(VENV)/bin/modelstore demo $(ARGS)

test: venv
	$(call use_server,test)
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

# Build artefacts and caches; `make distclean` also removes the virtualenv.
clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .ruff_cache .mypy_cache .coverage htmlcov
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
