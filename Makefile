# Two entry points: `make demo` and `make test`. Both create .venv if missing and are idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test bench bench-ingest-scale bench-teacher bench-distill bench-sampler bench-serve bench-cost apt-lists clean

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

test: venv apt-lists
	$(PY) -m pytest -q tests

bench: bench-ingest-scale bench-teacher bench-distill bench-sampler bench-serve bench-cost

bench-ingest-scale: venv
	$(PY) -m gkd.bench.ingest_scale --config jobs/configs/synthetic_products.yaml --out bench/results/ingest_scale.json --workdir bench/work/ingest_scale

bench-teacher: venv apt-lists
	$(PY) -m gkd.bench.teacher_debian --config jobs/configs/debian.yaml --out bench/results/teacher_debian.json --workdir bench/work/teacher_debian \
		--set rationale.unlabeled_budget=300 --set teacher.eval_budget=300

# students x methods x 3 seeds on the teacher bench's Debian graph and SmolLM2 outputs (reuses finished runs)
bench-distill: venv
	$(PY) -m gkd.bench.distill_debian --config jobs/configs/debian.yaml --workdir bench/work/teacher_debian --out bench/results/distill_debian.json

# gkd's sampler vs PyG NeighborLoader on torch-sparse built from source (wheels cached in ~/.cache/gkd-bench-wheels)
bench-sampler: venv
	$(PY) -m gkd.bench.sampler --out bench/results/sampler.json --graph-dir bench/work/teacher_debian/graph

# Ray Serve configurations vs a bare uvicorn app serving the same student, wrk on loopback (~9 min); the Debian
# graph, lingugkd student and tuned teacher of bench-teacher/bench-distill, else a synthetic store
bench-serve: venv
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get install -y -qq wrk || { apt-get -qq update && apt-get install -y -qq wrk; }; \
	else echo "bench-serve needs wrk (the HTTP benchmark): run 'sudo apt-get install wrk' and retry" >&2; exit 1; fi; }
	$(PY) -m gkd.bench.serve --config jobs/configs/debian.yaml --workdir bench/work/teacher_debian \
		--checkpoint bench/work/teacher_debian/students/sage-lingugkd-s0/checkpoint --out bench/results/serve.json

# the demo's student vs its tuned teacher on the same 64 test nodes, one thread each (after make demo)
bench-cost: venv
	$(PY) -m gkd.bench.cost --config jobs/configs/demo.yaml --out bench/results/cost.json

clean:
	rm -rf $(VENV) runs
