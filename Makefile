# Two commands for a newcomer: `make demo` (the main job end to end) and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
GRDR   := $(VENV)/bin/grdr
DATASET ?= ../shared/datasets/tvr-proxy/msrvtt
MODEL   ?= models/msrvtt
INDEX   ?= msrvtt

.PHONY: install system-deps cluster cluster-stop test unit demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,test]'
	touch $@

install: $(VENV)/.installed

# redis-server and Maven come from Debian (Maven fetches OpenSearch + k-NN once, in `grdr cluster start`).
system-deps:
	@missing=""; command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "missing:$$missing; install with: sudo apt-get install$$missing"; exit 1; fi; fi

cluster: install system-deps
	$(GRDR) cluster start

cluster-stop:
	$(GRDR) cluster stop

unit: install
	$(PY) -m pytest -q tests/unit

test: cluster
	$(PY) -m pytest -q

demo: cluster
	$(PY) -m query.demo --dataset $(DATASET) --model $(MODEL) --index $(INDEX)

clean:
	rm -rf $(VENV) .pytest_cache
