# The two commands of the README: `make run` and `make test`.
# Everything they need is installed here, into .venv, from the registries.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint setup bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py native/build_ffi.py native/cocaine_frame.c native/cocaine_frame.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e ".[test,bench]"
	$(PY) -c "import cocaine_http._native" || (echo "native decoder failed to build" >&2; exit 1)
	touch $(STAMP)

# Run the main job: the Flask example served by the embedded local runtime.
run: $(STAMP)
	$(VENV)/bin/cocaine-http dev examples.flask_app.app:app --bind 127.0.0.1:8080

# Lint first (config: [tool.ruff] in pyproject.toml), then the whole suite,
# once with each decoder backend.
test: lint
	COCAINE_HTTP_DECODER=native $(PY) -m pytest -q
	COCAINE_HTTP_DECODER=python $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check cocaine_http bench tests

bench: $(STAMP)
	$(PY) bench/decoder.py

clean:
	rm -rf $(VENV) build *.egg-info cocaine_http/_native*.so cocaine_http/_native.c
