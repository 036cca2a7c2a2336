# Match: `make serve` runs the service on the embedded store (installing only what serving needs);
# `make test` installs the dev and test tools too and runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8888
export PORT
# processes `make test` runs the suite in (pytest-xdist); most tests wait on a server or an engine
TEST_WORKERS ?= 2

.PHONY: install install-serve serve test test-deep lint format bench bench-signatures bench-cli clean

# The development install: the package, the dev/test tools (pyproject's `dev` extra) and
# image-match 1.1.2, the oracle tests/test_signature.py compares Match's signatures with: it pins
# 2017 versions, so it comes without its dependencies, beside scikit-image (the `bench` extra).
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/pip install --quiet --no-deps image-match==1.1.2
	sh scripts/install-browser.sh
	touch $(VENV)/.installed-serve $@

# What serving needs and nothing else: the package and its runtime dependencies.
install-serve: $(VENV)/.installed-serve

$(VENV)/.installed-serve: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

serve: install-serve
	$(BIN)/match serve

# pytest runs the suite in TEST_WORKERS processes (one test file per process at a time, so a
# file's servers are shared by its tests), then the tests marked `alone` (they measure time or
# kill servers) by themselves; the second part runs whatever the first gives, and either failing
# fails.
test: install
	sh scripts/install-browser.sh
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	status=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile -m "not alone" || status=$$?; \
	$(BIN)/pytest -m alone || status=$$?; \
	exit $$status

# The property tests searching freely (random examples, many more of them) instead of CI's fixed set.
test-deep: install
	MATCH_HYPOTHESIS_PROFILE=deep $(BIN)/pytest tests/test_signature.py tests/test_fuzz.py

lint: install
	$(BIN)/ruff check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench-signatures: install
	test -d bench/wallpapers/files || bench/get_wallpapers.sh
	$(BIN)/python bench/signatures.py

# `match add` throughput on the dev photos, with and without partial matching (README's figures).
bench-cli: install
	nice $(BIN)/python bench/cli.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache

# The container image (needs a Docker engine): `make build run`; `make push DOCKER_TAG=registry/match:1.0`;
# `make dev` runs Match + Elasticsearch with docker compose, both on 127.0.0.1 only.
DOCKER ?= docker
DOCKER_TAG ?= match:latest

.PHONY: build run push dev

build:
	$(DOCKER) build --tag $(DOCKER_TAG) .

run:
	$(DOCKER) run --rm -p 127.0.0.1:$(PORT):8888 -e WORKER_COUNT -v match-data:/data $(DOCKER_TAG)

push:
	$(DOCKER) push $(DOCKER_TAG)

dev:
	DOCKER_TAG=$(DOCKER_TAG) $(DOCKER) compose up --build
