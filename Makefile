# The two commands of the README: `make run` and `make test`.
# Everything they need is installed here, into .venv, from the registries.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test test-pythons lint setup bench clean

# `make run PORT=9000`: the HTTP port of `make run` (loopback).
PORT ?= 8080
# The oldest and newest Python the package supports; `make test` also runs the
# suite on them (native decoder). A version whose interpreter is not found is
# skipped with a note; `PYTHONS=` (empty) skips them all.
PYTHONS ?= 3.10 3.13
# python3.X on PATH that runs, else pyenv's build of it.
find_python = $(shell for c in python$(1) $$(ls -d $$HOME/.pyenv/versions/$(1).*/bin/python$(1) 2>/dev/null); \
	do $$c -c "" >/dev/null 2>&1 && { command -v $$c; break; }; done)

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py native/build_ffi.py native/cocaine_frame.c native/cocaine_frame.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) -c "import cocaine_http._native" || (echo "native decoder failed to build" >&2; exit 1)
	touch $(STAMP)

# Run the main job: the Flask example served by the embedded local runtime.
run: $(STAMP)
	$(VENV)/bin/cocaine-http dev examples.flask_app.app:app --bind 127.0.0.1:$(PORT)

# Lint first (config: [tool.ruff] in pyproject.toml), then the whole suite,
# once with each decoder backend, then on the other Pythons (test-pythons).
test: lint
	COCAINE_HTTP_DECODER=native $(PY) -m pytest -q
	COCAINE_HTTP_DECODER=python $(PY) -m pytest -q
	$(MAKE) --no-print-directory test-pythons

# The suite on each of $(PYTHONS), in .venv-3.X (created on first use).
test-pythons: $(addprefix test-python-,$(PYTHONS))

# (kept: make would delete a stamp it made through this pattern chain as an intermediate file)
.PRECIOUS: .venv-%/.installed-stamp
test-python-%: .venv-%/.installed-stamp
	@if [ -x .venv-$*/bin/python ]; then \
		echo "== Python $*"; \
		COCAINE_HTTP_DECODER=native .venv-$*/bin/python -m pytest -q -p no:cacheprovider; \
	fi

.venv-%/.installed-stamp: pyproject.toml setup.py native/build_ffi.py native/cocaine_frame.c native/cocaine_frame.h
	@py="$(call find_python,$*)"; \
	if [ -z "$$py" ]; then echo "note: python$* not found, skipping the suite on it"; exit 0; fi; \
	echo "creating .venv-$* with $$py"; \
	$$py -m venv .venv-$* && \
	.venv-$*/bin/python -m pip install --quiet --upgrade pip setuptools wheel && \
	.venv-$*/bin/python -m pip install --quiet -e ".[test]" && \
	.venv-$*/bin/python -c "import cocaine_http._native" && \
	touch $@

# ruff ([tool.ruff]) on everything, then mypy --strict ([tool.mypy]) on the package.
lint: $(STAMP)
	$(VENV)/bin/ruff check cocaine_http bench tests
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/decoder.py

clean:
	rm -rf $(VENV) .venv-3.* build *.egg-info cocaine_http/_native*.so cocaine_http/_native.c
