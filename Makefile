# pvsim: every task a developer or CI runs, on Debian 12's own python3 and python3-* packages.
PYTHON      ?= /usr/bin/python3
export PYTHONPATH := $(CURDIR)
RUNTIME_DEPS = rabbitmq-server python3-pika python3-yaml python3-tenacity python3-prometheus-client
TEST_DEPS    = $(RUNTIME_DEPS) python3-pytest python3-freezegun python3-matplotlib prometheus \
               debhelper dh-python pybuild-plugin-pyproject lintian systemd-container debootstrap \
               dpkg-dev python3-all python3-setuptools
DEMO_OUT    ?= $(CURDIR)/out
PYTEST_ARGS ?=

.PHONY: demo check test bench deps test-deps rabbitmq deb clean

## demo: install what is missing, start RabbitMQ, simulate today in seconds, print the summary
demo: deps rabbitmq
	$(PYTHON) -m pvsim.run --accelerated --config config/pvsim.yaml --output $(DEMO_OUT)

## check: install the test dependencies and run the whole test suite
check: test-deps rabbitmq
	$(PYTHON) -m pytest -q -ra $(PYTEST_ARGS)

test: check

## bench: print throughput figures (see bench/)
bench: test-deps rabbitmq
	$(PYTHON) bench/bench_pipeline.py

deps:
	@scripts/ensure-packages $(RUNTIME_DEPS)

test-deps:
	@scripts/ensure-packages $(TEST_DEPS)

rabbitmq:
	@scripts/ensure-rabbitmq

## deb: build dist/pvsim_<version>_all.deb (dpkg-buildpackage -us -uc -b) and check it with lintian
deb:
	scripts/build-deb

clean:
	rm -rf out build .pytest_cache *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
