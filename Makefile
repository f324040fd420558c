# Two commands set up everything on a fresh Linux machine: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint install clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/questlog up

# The browser tests drive Debian's chromium through Playwright (never Playwright's
# own browser download); installed here when missing, with apt as root or sudo.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

# mypy cannot follow setuptools' editable finder (questlog.events -> events/), so it
# reads the package through a tree of links that mirrors the installed layout.
TYPED := $(VENV)/typecheck
PACKAGES := events projections services gateway

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	mkdir -p $(TYPED)/questlog
	for d in $(PACKAGES); do ln -sfn $(CURDIR)/$$d $(TYPED)/questlog/$$d; done
	cd $(TYPED) && $(CURDIR)/$(BIN)/mypy --config-file $(CURDIR)/pyproject.toml $(addprefix -p questlog.,$(PACKAGES))

test: $(STAMP) browser lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .questlog .pytest_cache
