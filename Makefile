# rayscale — every target creates .venv and installs the project first (idempotent).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Ray >= 2.59 turns token authentication on for local clusters; rayscale follows whatever is set.
# The embedded Ray generates its own token, so `token` needs no setup on a laptop.
export RAY_AUTH_MODE ?= token
export RAY_USAGE_STATS_ENABLED ?= 0

.PHONY: install run test test-fast bench bench-grid bench-tune bench-scale bench-load bench-repeat bench-startup bench-predict bench-asha bench-cv bench-isolate bench-dispatch bench-faults bench-transfer lint e2e-kind controlplane cluster cluster-down dashboard constraints clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,k8s]'
	touch $(STAMP)

install: $(STAMP)

run: install  ## the seed experiment on an embedded local Ray
	$(BIN)/rayscale run $(ARGS)

test: install  ## every test (unit, CLI, integration on a real local Ray)
	$(BIN)/pytest $(ARGS)

test-fast: install  ## skip the tests marked slow
	$(BIN)/pytest -m "not slow" $(ARGS)

bench: bench-grid bench-tune bench-scale bench-load  ## every benchmark; results land in bench/results/

bench-grid: install
	$(BIN)/python bench/grid.py $(ARGS)

bench-tune: install
	$(BIN)/python bench/tune.py $(ARGS)

bench-scale: install
	$(BIN)/python bench/scale.py $(ARGS)

bench-load: install
	$(BIN)/python bench/load.py $(ARGS)

bench-repeat: install  ## five fresh `rayscale run`s: do their speedup intervals overlap?
	$(BIN)/python bench/repeat.py $(ARGS)

bench-startup: install  ## the fixed costs of an embedded Ray, part by part, and `rayscale run` before/after
	$(BIN)/python bench/startup.py $(ARGS)

bench-predict: install  ## rayscale predict: 2 local nodes predicted from 1, and 10,000 trials on 1..1,024 nodes
	$(BIN)/python bench/predict.py $(ARGS)

bench-asha: install  ## ASHA's replayed distribution against 8 real runs
	$(BIN)/python bench/asha.py $(ARGS)

bench-cv: install  ## the seed grid's speedup with and without --cv 5
	$(BIN)/python bench/cv.py $(ARGS)

bench-isolate: install  ## (root) scale --isolate against a plain local cluster at the same CPUs
	$(BIN)/python bench/isolate.py $(ARGS)

bench-dispatch: install  ## (root) the grid's own dispatch against Ray's queueing on isolated clusters, and Tune
	$(BIN)/python bench/dispatch.py --tune $(ARGS)

bench-faults: install  ## (root) partitions, a slowed node and a lost head on isolated clusters
	$(BIN)/python bench/faults.py $(ARGS)

bench-transfer: install  ## (root) the data's way to 1-3 isolated nodes: plain TCP against Ray's object transfer
	$(BIN)/python bench/transfer.py $(ARGS)

e2e-kind: install  ## chart + image + RayJob on a kind cluster (needs docker, kind, kubectl)
	$(BIN)/pytest -m kind tests/e2e $(ARGS)

controlplane: install  ## build the Kubernetes binaries (control plane, kwok, KubeRay operator, kubelet, containerd, CoreDNS) into .tools/k8s/bin and the node's images (cached)
	bash tools/k8s/install.sh

cluster: controlplane  ## (root) a one-node cluster whose pods run; ends with the `export KUBECONFIG=...` line (docs/local-kubernetes.md)
	$(BIN)/python tests/realnode.py up

cluster-down: install  ## stop `make cluster`'s cluster and remove everything it made
	$(BIN)/python tests/realnode.py down

dashboard: install  ## regenerate the Grafana dashboard JSON from deploy/grafana/queries.yaml
	$(BIN)/python deploy/grafana/build.py

constraints:  ## re-pin the image's dependencies from a clean runtime install
	rm -rf .venv-runtime && $(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/pip install -q '.[k8s]'
	.venv-runtime/bin/pip freeze --exclude rayscale > constraints.txt
	rm -rf .venv-runtime

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache src/*.egg-info
