# queuewatch: `make run` serves the dashboard, `make test` runs the tests.
# Both create the virtual environment, install, and start a local Redis and
# RabbitMQ if they are installed but not running.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RQ1    := .venv-rq1
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test services browser clean

run: $(VENV)/.installed-run services
	$(BIN)/queuewatch serve $(ARGS)

test: $(VENV)/.installed-test $(RQ1)/.installed services browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=69"

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

# RQ 1.16 in its own environment: the tests use it to write 1.x-format data.
$(RQ1)/.installed:
	$(PYTHON) -m venv $(RQ1)
	$(RQ1)/bin/pip install --quiet 'rq==1.16.2' 'redis>=5,<6'
	touch $@

services:
	@scripts/services.sh

browser:
	@scripts/ensure-chromium.sh

clean:
	rm -rf $(VENV) $(RQ1) build *.egg-info
