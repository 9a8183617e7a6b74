# Two commands do all set-up on a fresh machine (Python 3.11, no GPU):
#   make demo   create .venv if missing, then run the nightly DAG end to end on the embedded stack
#   make test   create .venv if missing, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/demo.yaml

export LREM_HOME ?= $(CURDIR)/.lrem
export LREM_MILVUS_URI ?= http://127.0.0.1:19530
export AIRFLOW_HOME := $(LREM_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__LOGGING__BASE_LOG_FOLDER := $(LREM_HOME)/logs/airflow
export MLFLOW_TRACKING_URI ?= sqlite:///$(LREM_HOME)/mlflow/mlflow.db
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1
# uv does not read pip's config: hand it the local wheel folder pip's config names (if any)
FIND_LINKS := $(shell pip config get global.find-links 2>/dev/null)
UV_FLAGS := $(if $(FIND_LINKS),--find-links $(FIND_LINKS))

.PHONY: demo test env clean milvus-start milvus-stop mlflow-ui bench experiment serve serve-stop browser-deps
.PHONY: up down status stack-deps test-stack

env: $(VENV)/.installed

# torch first, with pip (it takes the CPU wheel the machine's pip config points at, never the
# multi-GB CUDA build), then the rest of the pinned set with uv, then this package.
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv==0.13.9
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/uv pip install -q --python $(BIN)/python $(UV_FLAGS) -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	$(BIN)/python -c "import torch; assert not torch.version.cuda, 'expected the CPU build of torch'"
	touch $@

demo: env
	mkdir -p $(LREM_HOME)/logs
	$(BIN)/lrem --config $(CONFIG) data bootstrap
	$(BIN)/airflow db migrate > $(LREM_HOME)/logs/airflow-db-migrate.log 2>&1 || (tail -20 $(LREM_HOME)/logs/airflow-db-migrate.log; exit 1)
	$(BIN)/lrem --config $(CONFIG) milvus start > /dev/null
	$(BIN)/airflow dags test lrem_nightly --conf '{"config": "$(CONFIG)"}' 2>&1 | tee $(LREM_HOME)/logs/last-demo.log; \
	  status=$${PIPESTATUS[0]}; $(BIN)/lrem --config $(CONFIG) summary; \
	  if [ $$status -eq 0 ]; then $(BIN)/lrem --config $(CONFIG) serve --background; fi; exit $$status

test: env browser-deps
	$(BIN)/python -m pytest -q tests

# Chromium for the browser test (tests/service/test_browser_promotion.py), from the distribution's
# packages where this runs as root with apt; elsewhere the test skips and says why.
browser-deps:
	@command -v chromium > /dev/null 2>&1 || command -v chromium-browser > /dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1 && \
	    { apt-get install -y -q --no-install-recommends chromium > /dev/null 2>&1 || \
	      { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q --no-install-recommends chromium > /dev/null 2>&1; }; } \
	  || echo "chromium not installed: the browser test will skip"; }

# The long-running stack (docs/stack.md): Postgres (a cluster under $(LREM_HOME), or LREM_PG_URL), mlflow server,
# Airflow 3 api-server + scheduler + dag-processor, Milvus Lite, the search service; prints every URL and the
# Airflow admin login. Ports: LREM_PG_PORT, LREM_MLFLOW_PORT, LREM_AIRFLOW_PORT, LREM_SERVE_PORT, LREM_MILVUS_URI.
up: env stack-deps
	LREM_CONFIG=$(CONFIG) $(BIN)/lrem stack up

down: env
	LREM_CONFIG=$(CONFIG) $(BIN)/lrem stack down

status: env
	@LREM_CONFIG=$(CONFIG) $(BIN)/lrem stack status

# the stack's own tests (tests/stack/test_stack.py, marker `stack`): tens of minutes, not part of `make test`
test-stack: env stack-deps browser-deps
	LREM_STACK_TESTS=1 $(BIN)/python -m pytest -q -s -m stack tests/stack

# PostgreSQL for `make up`, from the distribution's packages where this runs as root with apt
stack-deps:
	@[ -n "$$LREM_PG_URL" ] || ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || command -v initdb > /dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1 && \
	    { apt-get install -y -q --no-install-recommends postgresql > /dev/null 2>&1 || \
	      { apt-get update -q > /dev/null 2>&1 && apt-get install -y -q --no-install-recommends postgresql > /dev/null 2>&1; }; } \
	  || { echo "PostgreSQL is not installed and cannot be installed here: install it or set LREM_PG_URL"; exit 1; }; }

bench: env
	$(BIN)/python bench/run_all.py

milvus-start: env
	$(BIN)/lrem --config $(CONFIG) milvus start

milvus-stop: env
	$(BIN)/lrem --config $(CONFIG) milvus stop

mlflow-ui: env
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --port 5000

# the search service, detached (make demo starts it too); URL printed, log in $(LREM_HOME)/logs/service.log
serve: env
	$(BIN)/lrem --config $(CONFIG) milvus start > /dev/null
	$(BIN)/lrem --config $(CONFIG) serve --background

serve-stop: env
	$(BIN)/lrem --config $(CONFIG) serve-stop

clean:
	-$(BIN)/lrem serve-stop > /dev/null 2>&1
	-$(BIN)/lrem milvus stop > /dev/null 2>&1
	rm -rf $(LREM_HOME) data .dvc/tmp .dvc/config.local
