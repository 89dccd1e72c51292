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

# redis-server comes from Debian; OpenSearch and its plugins are fetched by `grdr cluster start`.
system-deps:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
	  else echo "redis-server is missing: sudo apt-get install redis-server"; exit 1; fi; }

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
