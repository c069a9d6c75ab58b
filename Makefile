# medcorpus — `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JARS   := .ivy/.fetched
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: setup run test test-fast bench clean demo tables lint

setup: $(STAMP) $(JARS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# Resolve the Delta jars from Maven Central into the project-local Ivy cache (once).
$(JARS): $(STAMP) configs/ivysettings.xml
	$(PY) -m medcorpus.jars fetch
	touch $(JARS)

demo: setup
	$(PY) -m medcorpus.cli demo --out build/demo

run: setup
	$(PY) -m medcorpus.cli run

tables: setup
	$(PY) -m medcorpus.cli tables

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not shared_data"

bench: setup
	$(PY) bench/run.py --out bench/results.json

clean:
	rm -rf warehouse build spark-warehouse metastore_db derby.log .pytest_cache
