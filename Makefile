# The README's commands. Each target prepares .venv itself, so a fresh clone needs only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-oldest test-newest demo lint typecheck bench bench-quick soak screenshots bench-chat clean

$(STAMP): setup.cfg pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,testing,redis,browser]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check dingsync worker tests examples benchmarks
	$(BIN)/ruff format --check dingsync worker tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# The oldest Python we support, with the newest dependencies that still install there
# (click 8.1, websockets 15): the tests only, since ruff and mypy already ran. Then the stream
# tests once more on the oldest websocket-client setup.cfg allows: frames are read and written
# over its socket (dingsync/stream/wsio.py), so both ends of the range are tried.
OLDEST ?= python3.9
OLDEST_WEBSOCKET_CLIENT := $(shell sed -n 's/^ *websocket-client>=\([0-9.]*\),.*/\1/p' setup.cfg)
test-oldest:
	$(OLDEST) -m venv .venv-oldest
	.venv-oldest/bin/pip install -q --upgrade pip
	.venv-oldest/bin/pip install -q -e '.[dev,testing,redis,browser]'
	.venv-oldest/bin/pytest -q
	.venv-oldest/bin/pip install -q 'websocket-client==$(OLDEST_WEBSOCKET_CLIENT).*'
	.venv-oldest/bin/pytest -q tests/stream tests/conformance

# The newest Python this machine has, with the newest dependencies: the tests only.
NEWEST ?= python3.13
test-newest:
	$(NEWEST) -m venv .venv-newest
	.venv-newest/bin/pip install -q --upgrade pip
	.venv-newest/bin/pip install -q -e '.[dev,testing,redis,browser]'
	.venv-newest/bin/pytest -q

demo: $(STAMP)
	$(BIN)/python -m dingworker.demo

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run --write-readme

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run --quick

# The README's picture of the chat window, taken in Chromium (apt-get install chromium).
screenshots: $(STAMP)
	$(BIN)/python -m benchmarks.chat_screenshot docs/chat-window.png

# The chat window's page weight and first render in Chromium.
bench-chat: $(STAMP)
	$(BIN)/python -m benchmarks.chat_page

soak: $(STAMP)
	DINGSYNC_SOAK=full $(BIN)/pytest -m soak tests/soak -q -s

clean:
	rm -rf $(VENV) .venv-oldest .venv-newest build *.egg-info .mypy_cache .ruff_cache
