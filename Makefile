# Entry points named in README.md. Every target bootstraps first, so each
# works on a fresh Debian machine.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps demo test test-fast test-protobuf5 lint typecheck bench profile soak fixtures proto generate clean

deps:
	scripts/bootstrap.sh

demo: deps
	$(VENV)/bin/cardguard demo

test: deps
	$(PY) -m pytest -q

lint: deps
	$(VENV)/bin/ruff check exporter tests benchmarks
	$(VENV)/bin/ruff format --check exporter tests benchmarks

typecheck: deps
	$(VENV)/bin/mypy

bench: deps
	$(PY) -m benchmarks

# cardguard's own flame graphs in docs/ (docs/performance.md): a cold 200k-series
# page, google/pprof's large.cpu and a 100k-goroutine dump, sampled by pyinstrument
# and drawn by cardguard.expose.flamegraph. Needs Go for the dump (benchmarks/goprogs).
PAGE = $$($(PY) -c 'from benchmarks.bench_cardinality import page_path; print(page_path(200000))')
DUMP = $$($(PY) -c 'from benchmarks.bench_pprof import dump_path; print(dump_path())')
profile: deps
	$(PY) -m benchmarks.profile --svg docs/flame-cardinality.svg -- cardinality $(PAGE) --format json
	$(PY) -m benchmarks.profile --svg docs/flame-heap.svg -- \
		heap tests/testdata/corpora/google-pprof/internal/proftest/testdata/large.cpu
	$(PY) -m benchmarks.profile --svg docs/flame-goroutines.svg -- goroutines $(DUMP) --format json

soak: deps
	$(PY) -m pytest -q -m slow tests/test_soak.py

fixtures: deps
	tests/testdata/record.sh

# Regenerate what derives from rules/settings.yml, rules/src/ and grafana/generate.py, in order:
# alert rules, dashboards, then the Kubernetes PrometheusRule and dashboards ConfigMap.
generate: deps
	$(PY) rules/generate.py
	$(PY) grafana/generate.py
	$(PY) deploy/kubernetes/generate.py

# Regenerate the type stub of the pprof messages from the schema in profile_pb2.py.
proto: deps
	$(PY) -m cardguard.pprof.profile_pb2 > exporter/cardguard/pprof/profile_pb2.pyi

# The pprof tests once more beside protobuf 5.x, the oldest runtime pyproject.toml allows, in a
# venv of their own (cardguard must install next to libraries that pin protobuf 5 or 6).
# Needs PyPI for the venv's packages.
PB5_VENV := build/venv-protobuf5
test-protobuf5: deps
	rm -rf $(PB5_VENV)
	python3 -m venv $(PB5_VENV)
	$(PB5_VENV)/bin/pip install -q 'protobuf>=5.26,<6' -e . pytest pytest-timeout
	$(PB5_VENV)/bin/python -c 'import google.protobuf as p, sys; sys.exit(not p.__version__.startswith("5.") and "protobuf " + p.__version__ + " is not 5.x")'
	$(PB5_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test_pprof_profile.py tests/test_heap.py tests/test_cli_heap.py

clean:
	rm -rf $(VENV) build *.egg-info exporter/*.egg-info .pytest_cache .mypy_cache .ruff_cache
