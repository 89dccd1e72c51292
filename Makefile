# Two commands for a newcomer: `make demo` (the main job end to end) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
GRDR   := $(VENV)/bin/grdr
DATASET ?= ../shared/datasets/tvr-proxy/msrvtt
MODEL   ?= models/msrvtt
INDEX   ?= msrvtt

.PHONY: help install system-deps browser-deps cluster cluster-stop test unit lint demo clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,test]'
	touch $@

install: $(VENV)/.installed  ## the virtual environment .venv/ (grdr with its train and test extras)

# redis-server and Maven come from Debian (Maven fetches OpenSearch + k-NN once, in `grdr cluster start`);
# so does chromium, the browser the search page's test drives headless (tests/integration/test_search_page.py).
APT_INSTALL = if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "missing:$$missing; install with: sudo apt-get install$$missing"; exit 1; fi; fi

system-deps:  ## redis-server and maven from apt, when missing (as root)
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	$(APT_INSTALL)

browser-deps:  ## chromium from apt, when missing (as root): the search page's browser test
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	$(APT_INSTALL)

cluster: install system-deps  ## start the local OpenSearch node + Redis (grdr cluster start)
	$(GRDR) cluster start

cluster-stop:  ## stop them
	$(GRDR) cluster stop

unit: install  ## unit tests only (nothing running)
	$(PY) -m pytest -q tests/unit

test: cluster browser-deps  ## every test: unit + integration against the real node, Redis and Celery workers
	$(PY) -m pytest -q

demo: cluster  ## train (or reuse) a model, ingest via Celery, search, recall through OpenSearch
	$(PY) -m bench.demo --dataset $(DATASET) --model $(MODEL) --index $(INDEX)

lint: install  ## ruff (rules in pyproject.toml)
	$(VENV)/bin/ruff check .

clean:  ## remove .venv/ (the cluster's .grdr/ stays)
	rm -rf $(VENV) .pytest_cache
