# Entry points named in README.md. Every target bootstraps first, so each
# works on a fresh Debian machine.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: deps demo test test-fast lint typecheck bench soak fixtures proto generate clean

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

# Regenerate the pprof protobuf module from its schema (needs: pip install grpcio-tools).
proto:
	cd exporter && ../$(PY) -m grpc_tools.protoc -I. --python_out=. --pyi_out=. cardguard/pprof/profile.proto

clean:
	rm -rf $(VENV) build *.egg-info exporter/*.egg-info .pytest_cache .mypy_cache .ruff_cache
