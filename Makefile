# pvsim: every task a developer or CI runs, on Debian 12's own python3 and python3-* packages.
PYTHON      ?= /usr/bin/python3
export PYTHONPATH := $(CURDIR)
RUNTIME_DEPS = rabbitmq-server python3-pika python3-yaml python3-tenacity python3-prometheus-client \
               python3-waitress
TEST_DEPS    = $(RUNTIME_DEPS) python3-pytest python3-freezegun python3-hypothesis python3-matplotlib curl \
               debhelper dh-python pybuild-plugin-pyproject lintian systemd-container debootstrap \
               dpkg-dev python3-all python3-setuptools mypy python3-typeshed flake8
# Wanted for their programs only (promtool, and a prometheus the tests run as their own process):
# installed with their services stopped and disabled, so that make check leaves none running.
TEST_TOOLS   = prometheus
DEMO_OUT    ?= $(CURDIR)/out
PYTEST_ARGS ?=

.PHONY: demo check lint test bench deps test-deps rabbitmq deb clean help

## demo: install what is missing, start RabbitMQ, simulate today in seconds, print the summary
demo: deps rabbitmq
	bin/pvsim-run --accelerated --config config/pvsim.yaml --output $(DEMO_OUT)

## check: install the test dependencies, run the lint gate, then the whole test suite
check: test-deps rabbitmq
	$(MAKE) --no-print-directory lint
	$(PYTHON) -m pytest -q -ra $(PYTEST_ARGS)

## lint: the type checker (mypy: pvsim/, settings in setup.cfg) and flake8, from zero findings
lint:
	mypy
	flake8 pvsim tests bench

test: check

## test-fast: the tests that need no RabbitMQ, no daemon and no container (under a minute)
test-fast:
	PVSIM_TEST_TIER=fast $(PYTHON) -m pytest -q -ra $(PYTEST_ARGS) \
	    -m "not broker and not daemon and not cluster and not container and not slow"

## bench: print throughput figures (see bench/): a day, a year, a fleet (about 14 minutes)
bench: test-deps rabbitmq
	$(PYTHON) bench/bench_pipeline.py
	$(PYTHON) bench/bench_year.py
	$(PYTHON) bench/bench_fleet.py

## deps: install the Debian packages the programs need (what bin/pvsim-run etc. run on)
deps:
	@scripts/ensure-packages $(RUNTIME_DEPS)

test-deps:
	@scripts/ensure-packages $(TEST_DEPS)
	@scripts/ensure-packages --no-services $(TEST_TOOLS)

rabbitmq:
	@scripts/ensure-rabbitmq

## deb: build dist/pvsim_<version>_all.deb (dpkg-buildpackage -us -uc -b) and check it with lintian
deb:
	scripts/build-deb

## clean: remove what the targets and the programs left in the clone
clean:
	rm -rf out pvsim-output build dist .pybuild .hypothesis .pytest_cache *.egg-info
	rm -rf debian/.debhelper debian/pvsim debian/files debian/*.substvars debian/*.debhelper.log \
	       debian/debhelper-build-stamp debian/*.postinst.debhelper debian/*.postrm.debhelper \
	       debian/*.prerm.debhelper
	find . -name __pycache__ -prune -exec rm -rf {} +

## help: list these targets, the programs and their manuals
help:
	@echo "make targets:"
	@sed -n 's/^## \([a-z-]*\): /  \1\t/p' $(MAKEFILE_LIST) | expand -t 14
	@echo
	@echo "programs, run from this clone (the .deb installs them in /usr/bin):"
	@echo "  bin/pvsim-run --help      simulate whole days; bin/pvsim-run --accelerated --broker none"
	@echo "  bin/pvsim-meter --help    the meter daemon (--config FILE; default /etc/pvsim/pvsim.yaml)"
	@echo "  bin/pvsim-pv --help       the PV daemon, with /metrics, /healthz and the JOI Energy API"
	@echo
	@echo "manuals, read from this clone (after installing the .deb: man pvsim-run):"
	@for page in man/*.[1-8]; do echo "  man -l $$page"; done
