# Two entry points: `make demo` and `make test`. Both create .venv if missing and are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-fast bench bench-quick bench-quality bench-cost bench-sampler bench-stream bench-serve bench-scale bench-reliability wrk bench-wheels apt-lists clean

venv: $(STAMP)

# torch first (the local CPU build here, a CUDA build on GPU hosts), then gkd and its dependencies.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -e ".[test]"
	touch $(STAMP)

# apt's own package index with long descriptions (needs root and Debian's mirror); skipped when present.
apt-lists:
	@if ls /var/lib/apt/lists/*_Translation-en* >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get -qq -o Acquire::Languages=en update || echo "apt-get update failed: the debian source falls back to what is there"; \
	else echo "no Translation-en and not root: the debian source will use short descriptions"; fi

demo: venv apt-lists
	$(VENV)/bin/gkd demo --config jobs/configs/demo.yaml

# The whole suite; prints its 25 slowest steps.
test: venv apt-lists wrk
	$(PY) -m pytest -q --durations=25 tests

# The inner loop: no Ray cluster, no Ray Serve or HTTP server, no real model (MiniLM, SmolLM2) downloaded or
# loaded, nothing slow (markers in pyproject.toml). HF_HUB_OFFLINE makes a stray model download fail, not wait.
FAST := not ray and not slow and not serve
test-fast: venv apt-lists
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q --durations=10 -m "$(FAST)" tests

# Benchmarks (BENCHMARKS.md): every suite, full profile; `make bench-quick` is the smoke test of every suite
# (what CI runs, via tests/bench); `make bench-quality` (or -cost, -sampler, -stream, -serve, -scale) one suite.
# BENCH_WORK=DIR keeps the suites' work dirs (graph, teacher, students, scale stages) in DIR: a fresh clone
# given an earlier run's DIR resumes from it instead of recomputing (a cold full run is hours on 2 cores).
BENCH_WORK ?=
BENCH_ARGS := $(if $(BENCH_WORK),--work $(BENCH_WORK))
bench: venv apt-lists wrk bench-wheels
	$(VENV)/bin/gkd bench --profile full $(BENCH_ARGS)

bench-quick: venv wrk
	$(VENV)/bin/gkd bench --profile quick

bench-quality bench-cost bench-sampler bench-stream bench-serve bench-scale bench-reliability: bench-%: venv apt-lists wrk bench-wheels
	$(VENV)/bin/gkd bench --suite $* $(BENCH_ARGS)

# the HTTP load generator of the serve suite
wrk:
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq wrk || { apt-get -qq update && apt-get install -y -qq wrk; }; \
	else echo "the serve suite needs wrk (the HTTP benchmark): run 'sudo apt-get install wrk' and retry" >&2; exit 1; fi; }

# torch-scatter/torch-sparse built from source for the sampler suite's PyG side (pyg-lib has no PyPI wheel);
# about 40 min on 2 cores, once: the wheels are cached in ~/.cache/gkd-bench-wheels, never installed in .venv
BENCH_WHEELS := $(HOME)/.cache/gkd-bench-wheels
bench-wheels: venv
	@ls $(BENCH_WHEELS)/torch_sparse-0.6.18-*.whl >/dev/null 2>&1 || { \
	  MAX_JOBS=2 $(PIP) wheel -q --no-build-isolation --no-deps torch-scatter==2.1.2 -w $(BENCH_WHEELS) && \
	  MAX_JOBS=2 $(PIP) wheel -q --no-build-isolation --no-deps torch-sparse==0.6.18 -w $(BENCH_WHEELS); }

clean:
	rm -rf $(VENV) runs
