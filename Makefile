# The README's commands. Each one sets up .venv itself, so a clean clone needs
# nothing installed by hand beyond python3 (>=3.11), git and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8080
STORE  ?= .codeintel
# The CPU build of torch lies on local disk; any other torch request pulls a
# multi-GB CUDA build, so it is installed before anything that depends on it.
TORCH  := torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: all setup serve test check bench clean

all: test

$(STAMP): pyproject.toml
	@command -v git >/dev/null 2>&1 || { echo "error: the 'git' binary is required (apt-get install git)" >&2; exit 2; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

setup: $(STAMP)

serve: $(STAMP)
	$(BIN)/codeintel serve . --store $(STORE) --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(STORE) .pytest_cache .mypy_cache .ruff_cache
