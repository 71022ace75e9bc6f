# The two front-door commands (see README):
#   make train   set up, then train the default recipe on MNIST and report
#   make test    set up, then lint and run the test suite
# Both create .venv and install what they need on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Use the shared copy of MNIST beside the checkout when there is one; otherwise the loader looks
# in its cache and downloads from the public mirrors.
SHARED_MNIST := $(abspath ../shared/datasets/mnist)
export MNISTLAB_DATA ?= $(if $(wildcard $(SHARED_MNIST)/*),$(SHARED_MNIST),)

# The browser test drives Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup train test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel of 2.13.0; the project's range then adds nothing.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,web,ray,browser,export]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/mnistlab train $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

test: lint $(CHROMIUM)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
