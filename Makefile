# The README's commands. Each target prepares .venv itself, so a fresh clone needs only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-oldest demo lint typecheck bench bench-quick soak screenshots bench-chat clean

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
# (click 8.1, websockets 15): the tests only, since ruff and mypy already ran.
OLDEST ?= python3.9
test-oldest:
	$(OLDEST) -m venv .venv-oldest
	.venv-oldest/bin/pip install -q --upgrade pip
	.venv-oldest/bin/pip install -q -e '.[dev,testing,redis,browser]'
	.venv-oldest/bin/pytest -q

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
	rm -rf $(VENV) .venv-oldest build *.egg-info .mypy_cache .ruff_cache
