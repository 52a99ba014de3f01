# queuewatch: `make run` serves the dashboard, `make test` runs the tests.
# Both create the virtual environment, install, and start a local Redis and
# RabbitMQ if they are installed but not running.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RQ1    := .venv-rq1
HUEY2  := .venv-huey2
RQ3    := .venv-rq3
CELERY57 := .venv-celery57
# The RQ tests, run a second time against rq 3.0 (and redis-py 8) in $(RQ3).
RQ_TESTS ?= tests/test_rq_adapter.py tests/test_rq_states.py tests/test_rq_periodic.py tests/test_functions_rq.py tests/test_control_rq.py
# The Celery adapter's tests, run a second time against celery 5.7 (and redis-py 8) in $(CELERY57):
# the main environment keeps celery 5.6 because arq 0.28 needs redis-py < 6.
CELERY_TESTS ?= tests/test_celery_redis.py tests/test_celery_rabbitmq.py
ARGS   ?=
# Three test processes (the tests mostly wait on workers and brokers); a module stays in one process.
PYTEST_ARGS ?= -n 3 --dist loadfile
# setuptools warns about every editable install (a banner of asterisks): said once here instead.
QUIET_PIP := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install --quiet

.PHONY: run test test-rq3 test-celery57 services browser tools image demo constraints clean

run: $(VENV)/.installed-run services
	$(BIN)/queuewatch serve $(ARGS)

test: $(VENV)/.installed-test $(RQ1)/.installed $(RQ3)/.installed $(HUEY2)/.installed $(CELERY57)/.installed services browser tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	$(RQ3)/bin/python -m pytest $(RQ_TESTS)
	$(CELERY57)/bin/python -m pytest $(CELERY_TESTS)

# Only the Celery adapter's tests, on celery 5.7.
test-celery57: $(CELERY57)/.installed services
	$(CELERY57)/bin/python -m pytest $(CELERY_TESTS)

# Only the RQ tests, on rq 3.0.
test-rq3: $(RQ1)/.installed $(RQ3)/.installed services
	$(RQ3)/bin/python -m pytest $(RQ_TESTS)

# Every job system at work on its own Redis (a private redis-server) and
# RabbitMQ vhost, and the dashboard on them; Ctrl-C stops it all. The same
# QUEUEWATCH_* variables and ARGS as `make run` (scripts/demo/README.md).
demo: $(VENV)/.installed-test services
	$(BIN)/python scripts/demo/run.py -- $(ARGS)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=69"

$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/python
	$(QUIET_PIP) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(QUIET_PIP) -e '.[test]'
	touch $@ $(VENV)/.installed-run

# RQ 1.16 in its own environment: the tests use it to write 1.x-format data.
$(RQ1)/.installed:
	$(PYTHON) -m venv $(RQ1)
	$(RQ1)/bin/pip install --quiet 'rq==1.16.2' 'redis>=5,<6'
	touch $@

# Huey 2.x in its own environment: the tests use it to write 2.x-format data.
$(HUEY2)/.installed:
	$(PYTHON) -m venv $(HUEY2)
	$(HUEY2)/bin/pip install --quiet 'huey>=2.5,<3' 'redis>=5,<6'
	touch $@

# Celery 5.7 (the newest) in its own environment with the dashboard and pytest.
$(CELERY57)/.installed: pyproject.toml
	$(PYTHON) -m venv $(CELERY57)
	PYTHONWARNINGS="ignore:Editable installation" $(CELERY57)/bin/pip install --quiet 'celery[redis]>=5.7,<5.8' 'pytest>=8.0' -e .
	touch $@

# RQ 3.0 in its own environment with the dashboard and pytest: the RQ tests run there too
# (rq 3.0 needs redis-py >= 5.0.1; this env gets the newest, so the dashboard is tested on
# redis-py 8 as well). The main environment stays on rq 2.x (pyproject.toml).
$(RQ3)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RQ3)
	PYTHONWARNINGS="ignore:Editable installation" $(RQ3)/bin/pip install --quiet 'rq==3.0.0' 'redis>=5.0.1,<9' 'pytest>=8.0' -e .
	touch $@

services:
	@scripts/services.sh

browser:
	@scripts/ensure-chromium.sh

# podman, runc, debootstrap (tests/test_container.py), stunnel (the TLS tests)
# and promtool (the alert rules' test), when missing and we may install them.
tools:
	@scripts/ensure-tools.sh

# The image, built with podman without a registry (scripts/container.sh).
image: tools
	scripts/container.sh build localhost/queuewatch:dev

# The images install their dependencies pinned (deploy/constraints.txt, and
# scripts/demo/constraints.txt for the demo's): this
# resolves them afresh from PyPI in a clean venv (no local pip configuration),
# so a build pins what was current then. Review the diff, then commit it.
CONSTRAINTS_VENV := build/constraints-venv
constraints:
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(CONSTRAINTS_VENV)/bin/pip install --quiet --upgrade pip
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(CONSTRAINTS_VENV)/bin/pip install --quiet --upgrade setuptools wheel . 
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(CONSTRAINTS_VENV)/bin/python scripts/make-constraints.py deploy/constraints.txt
	rm -rf $(CONSTRAINTS_VENV)
	$(PYTHON) -m venv $(CONSTRAINTS_VENV)
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(CONSTRAINTS_VENV)/bin/pip install --quiet --upgrade pip setuptools wheel
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(CONSTRAINTS_VENV)/bin/pip install --quiet -r scripts/demo/requirements.in
	env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null $(CONSTRAINTS_VENV)/bin/python scripts/make-constraints.py scripts/demo/constraints.txt
	rm -rf $(CONSTRAINTS_VENV)
	@git diff --stat -- deploy/constraints.txt scripts/demo/constraints.txt

clean:
	rm -rf $(VENV) $(RQ1) $(RQ3) $(HUEY2) $(CELERY57) build *.egg-info
