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

# The demo needs only dingsync and its testing extra (the emulator), not the development tools:
# a venv that `make test` prepared will do, otherwise this installs just those, with progress.
# When python3 has a pip that can install into another environment (pip --python, pip >= 22.3),
# that pip fills the new venv: bootstrapping a pip inside it would take longer than the rest.
# Nothing is byte-compiled ahead (--no-compile): the demo compiles only what it imports.
DEMO_STAMP := $(VENV)/.demo-installed

$(DEMO_STAMP): setup.cfg pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt setup.cfg ] && [ $(STAMP) -nt pyproject.toml ]; then \
		touch $@; \
	else \
		echo "==> creating $(VENV) for the demo (make test adds the development tools later)" && \
		$(PY) -m venv --without-pip $(VENV) && \
		if $(PY) -m pip --python $(BIN)/python --version >/dev/null 2>&1; then \
			pip="$(PY) -m pip --python $(BIN)/python"; \
		else \
			$(BIN)/python -m ensurepip --default-pip >/dev/null && pip="$(BIN)/pip"; \
		fi && \
		echo "==> installing dingsync and its testing extra (the emulator) into $(VENV)" && \
		$$pip install --disable-pip-version-check --no-compile pip -e '.[testing]' && \
		touch $@; \
	fi

demo: $(DEMO_STAMP)
	@echo "==> running the calculator bot under dingworker --emulator"
	@$(BIN)/python -m dingworker.demo
	@echo "==> the commands are in $(BIN)/, e.g. $(BIN)/dingworker --emulator examples.echo:route"

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
