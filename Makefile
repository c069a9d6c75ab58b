# medcorpus — `make run` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JARS   := .ivy/.fetched-v2
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: setup run test test-slow test-fast bench clean demo tables lint cluster-test chromium models

setup: $(STAMP) $(JARS)
	@$(PY) -m medcorpus.core.jvmcache build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps "trl==1.16.0"  # no torch: only trl.data_utils is used (tests)
	touch $(STAMP)

# setup also dumps the driver JVM's class-data-sharing archive into .ivy/cds (once per JDK, pyspark and class
# path; ~2 min, 196 MB): local sessions then start in ~10 s instead of ~16 s (lib/medcorpus/core/jvmcache.py).

# Resolve the Delta jars, and hadoop-aws with the S3 modules of the AWS SDK v2 (~12 MB, not the 612 MiB
# bundle), from Maven Central into the project-local Ivy cache (once; a warm cache resolves offline).
$(JARS): $(STAMP) configs/ivysettings.xml
	$(PY) -m medcorpus.core.jars fetch --with-s3
	touch $(JARS)

demo: setup
	$(PY) -m medcorpus.cli demo --out build/demo

run: setup
	$(PY) -m medcorpus.cli run

# Train the shipped default models (domain classifier + quality rater) on every labelled source in
# ../shared/data, validate them by whole source, and write models/{domain,rater}/model.{npz,json} (committed).
models: setup
	$(PY) -m medcorpus.classify.modelbuild build --shared-data ../shared/data --out models --json bench/extraction.json

tables: setup
	$(PY) -m medcorpus.cli tables

# Headless Chromium renders the run report in tests/test_report.py (Debian package; we are root on CI).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

test: setup chromium
	$(PY) -m pytest -q -m "not slow" --durations=25

test-slow: setup chromium
	$(PY) -m pytest -q -m slow

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not shared_data"

# The baselines (datatrove with spaCy's tokenizer) are only needed here, not by the suite.
$(VENV)/.installed-bench: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $@

bench: setup $(VENV)/.installed-bench
	$(PY) bench/run.py --out bench/results.json $(BENCH_ARGS)

# Spark standalone master + worker on 127.0.0.1 from the pyspark distribution; spark-submit
# jobs/pipeline.py packaged as a zip; check the tables; stop. Then the suite's cluster test.
cluster-test: setup
	$(PY) -m medcorpus.cluster test --work build/cluster-test
	$(PY) -m pytest -q -m slow tests/test_cluster.py

# ruff (pycodestyle, pyflakes, import order, bugbear, pyupgrade) and mypy (lib/, with the pydantic plugin),
# both configured in pyproject.toml and installed by setup (the test extra pins them).
lint: $(STAMP)
	$(VENV)/bin/ruff check lib tests bench jobs
	$(VENV)/bin/mypy

clean:
	rm -rf warehouse build dist spark-warehouse metastore_db derby.log .pytest_cache
