# make run   - the suite on its embedded defaults (etc/maillab.dev.ini)
# make test  - the whole test suite (trial); fails on any failure or skip
# make check - the unit tests only, in parallel: the edit-test loop
# make bench - benchmarks against the real peers (Postfix, Dovecot, NSD)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A flat layout's editable install exposes twisted/plugins/maillab.py to
# twistd only in compat mode (setuptools' strict finder hides it).
INSTALL := $(BIN)/pip install --quiet -e '.[test]' --config-settings editable_mode=compat

# Unit tests on StringTransport, task.Clock and temporary Maildirs: none of
# them starts twistd, a real client or a peer server.
CHECK_TESTS := tests.test_addresses tests.test_config tests.test_service \
	tests.test_sendnow tests.test_lines tests.test_smtp tests.test_smtp_commit tests.test_smtp_outbound \
	tests.test_pop3 tests.test_store tests.test_store_contract tests.test_store_workers tests.test_store_view tests.test_store_sharedfd \
	tests.test_dns_zone tests.test_dns_compact tests.test_dns_zonecache tests.test_dns_answer tests.test_dns_support tests.test_auth.test_portal \
	tests.test_imap_parser tests.test_imap_response tests.test_layering tests.test_atomicwrite tests.test_composition \
	tests.test_imap_server tests.test_imap_commands tests.test_imap_service tests.test_http tests.test_mailauth tests.test_tlspolicy \
	tests.test_dns_twistedseam tests.test_plugin_discovery tests.test_imap_compliance \
	tests.test_store_ownchanges tests.test_imap_latency

.PHONY: run test check bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(INSTALL)
	touch $@

# The pid file goes in the dev config's state directory (var/), where
# `maillab reload --config etc/maillab.dev.ini` looks for it.
run: $(VENV)/.installed
	mkdir -p var
	$(BIN)/twistd -n --pidfile=var/maillab.pid maillab --config etc/maillab.dev.ini

test: $(VENV)/.installed
	set -o pipefail; $(BIN)/trial --temp-directory=_trial_temp tests 2>&1 | tee _trial_temp.log
	@# A skipped test is not a passing test.
	@if grep -Eq '^(PASSED|FAILED) .*skips=' _trial_temp.log; then \
	    echo "make test: tests were skipped; install what they need (see .ci/run)" >&2; exit 1; fi

check: $(VENV)/.installed
	$(BIN)/trial -j2 --temp-directory=_trial_check $(CHECK_TESTS)

bench: $(VENV)/.installed
	@for b in bench/*_bench.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) _trial_temp _trial_check _trial_temp.log build dist *.egg-info twisted/plugins/dropin.cache
