# The commands of the README. Each creates .venv and installs the package (editable, with
# its test extra) on first use; later calls reuse it until pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: run test lint bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The bench extra: torch==2.13.0 for the PyTorch columns (on this project's machines pip takes
# the CPU build that lies on disk; an unpinned torch would pull a multi-GB CUDA build).
$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

# make run ARGS="model=resmlp activation=elu"
run: $(STAMP)
	$(VENV)/bin/runner $(ARGS)

# What CI runs before the tests (.ci/run), in this order; the first failure stops it.
# ruff's rules and the import contracts are in pyproject.toml; pyright checks runner/core only.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/pyright

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q -n 2 --dist loadfile

# The measurements docs/performance.md records: long (tens of minutes on 2 cores); run it on a
# quiet machine. bench_train.py without torch leaves out the PyTorch columns.
bench: $(BENCH_STAMP)
	$(VENV)/bin/python benchmarks/bench_train.py --repeats 5 --trials 64
	$(VENV)/bin/python benchmarks/compare_bench.py --runs 1000 --repeats 5
	$(VENV)/bin/python benchmarks/bench_startup.py --repeats 5 --profile

# Every measurement once at toy sizes, without torch: checks that the benchmarks still run
# (a couple of minutes); the numbers mean nothing.
bench-quick: $(STAMP)
	$(VENV)/bin/python benchmarks/bench_train.py --quick
	$(VENV)/bin/python benchmarks/compare_bench.py --runs 100 --repeats 1
	$(VENV)/bin/python benchmarks/bench_startup.py --repeats 1

clean:
	rm -rf $(VENV) outputs
