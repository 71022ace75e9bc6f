# The two front-door commands (see README):
#   make train   set up the core (torch + mnistlab), then train the default recipe on MNIST and report
#   make test    set up the core plus the test extras, then lint and run the test suite
# Both create .venv and install what they need on a fresh machine; `make setup` / `make setup-test`
# only install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.installed-core
TEST_STAMP := $(VENV)/.installed-test
# What `make test` adds to the core: the dev tools and every optional feature the tests cover.
TEST_EXTRAS := dev,web,ray,browser,export
# Where torch comes from. Empty: the package index pip is configured with (on Linux, PyPI's torch
# is the CUDA build). TORCH_INDEX=https://download.pytorch.org/whl/cpu gets the CPU-only build.
TORCH_INDEX ?=
# Use the shared copy of MNIST beside the checkout when there is one (CI and the lab machines);
# otherwise the loader looks in its cache and downloads from the public mirrors.
SHARED_MNIST := $(abspath ../shared/datasets/mnist)
export MNISTLAB_DATA ?= $(if $(wildcard $(SHARED_MNIST)/*),$(SHARED_MNIST),)

# The browser test drives Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup setup-test train test lint chromium clean

setup: $(CORE_STAMP)
setup-test: $(TEST_STAMP)

$(CORE_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned (2.13.0): the project's range then installs nothing more.
	$(BIN)/pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e .
	touch $@

$(TEST_STAMP): $(CORE_STAMP)
	$(BIN)/pip install --quiet -e '.[$(TEST_EXTRAS)]'
	touch $@

train: $(CORE_STAMP)
	$(BIN)/mnistlab train $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Installs Chromium with apt when it can, saying so first; where it cannot (no apt-get, no root and
# no password-less sudo, or MNISTLAB_NO_BROWSER=1), says so and the browser test is skipped.
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ -n "$(MNISTLAB_NO_BROWSER)" ]; then \
	  echo "make test: MNISTLAB_NO_BROWSER is set: no Chromium install, the browser test will be skipped"; \
	elif command -v apt-get >/dev/null && { [ -z "$(SUDO)" ] || sudo -n true 2>/dev/null; }; then \
	  echo "make test: installing Debian's chromium with apt-get for the browser test (MNISTLAB_NO_BROWSER=1 to skip)"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; } \
	    || echo "make test: apt-get could not install chromium: the browser test will be skipped"; \
	else \
	  echo "make test: no $(CHROMIUM) and no apt-get with root rights to install it: the browser test will be skipped"; \
	fi

# -rs prints the reason of every skipped test (e.g. the browser test without Chromium). -n: one
# pytest-xdist worker a core (at most 4), each pinned to one torch thread by tests/conftest.py: the
# suite is ~5 CPU minutes of mostly single-threaded training, so 2 workers halve it on 2 cores.
PYTEST_WORKERS ?= auto --maxprocesses 4
test: lint chromium
	$(BIN)/python -m pytest -q -rs -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
