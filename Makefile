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

.PHONY: all setup serve test check bench clean base-image base-image-build images images-gpu e2e-images e2e-images-gpu

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

# -- Container images, built without a Docker daemon (docs/operations.md, "Images") --
# buildah builds from a Debian bookworm base made by mmdebstrap, because no
# registry needs to be reachable; `BASE_IMAGE=python:3.11-slim make images` builds
# from a registry instead. Wheels are kept in IMAGE_CACHE/pip between builds.
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
BASE_IMAGE  ?= localhost/debian-base:bookworm
SUITE       ?= bookworm
IMAGE_CACHE ?= $(HOME)/.cache/codeintel-images
CA_BUNDLE   ?= /etc/ssl/certs/ca-certificates.crt
# BUDFLAGS: more `buildah bud` options, e.g. --no-cache to rebuild every layer.
BUD = buildah bud --isolation chroot --layers --build-arg BASE_IMAGE=$(BASE_IMAGE) \
      -v $(CA_BUNDLE):$(CA_BUNDLE):ro -v $(abspath $(IMAGE_CACHE))/pip:/root/.cache/pip $(BUDFLAGS)

# $(call need,COMMAND PACKAGE ...): apt-get install the packages of missing commands.
define need
@missing=""; set -- $(1); while [ $$# -gt 1 ]; do \
  command -v $$1 >/dev/null 2>&1 || missing="$$missing $$2"; shift 2; done; \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
    echo "error: $@ needs$$missing; install them (apt-get install$$missing) as root" >&2; exit 2; fi; \
  echo "installing$$missing"; mkdir -p $(IMAGE_CACHE); \
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing; } \
    >$(IMAGE_CACHE)/apt.log 2>&1 \
    || { echo "error: $@ needs$$missing and 'apt-get install$$missing' failed (see $(IMAGE_CACHE)/apt.log)" >&2; exit 2; }; \
fi
endef

base-image:
	$(call need,buildah buildah)
	@if buildah inspect --type image $(BASE_IMAGE) >/dev/null 2>&1; then echo "$(BASE_IMAGE) is present"; \
	elif case "$(BASE_IMAGE)" in localhost/*) false;; esac; then echo "$(BASE_IMAGE) is pulled when needed"; \
	else $(MAKE) --no-print-directory base-image-build; fi

# Only when the base is missing: a Debian root filesystem from mmdebstrap, imported.
base-image-build:
	$(call need,mmdebstrap mmdebstrap)
	@mkdir -p $(IMAGE_CACHE) && tar=$(IMAGE_CACHE)/debian-$(SUITE).tar && \
	{ mmdebstrap --quiet --variant=apt --include=python3,python3-venv,git,ca-certificates \
	    $(SUITE) $$tar.tmp && mv $$tar.tmp $$tar; } \
	  || { rm -f $$tar.tmp; echo "error: mmdebstrap could not build a Debian $(SUITE) root filesystem" >&2; exit 2; }; \
	ctr=$$(buildah from scratch) && buildah add --quiet $$ctr $$tar / && buildah commit --quiet --rm $$ctr $(BASE_IMAGE) >/dev/null \
	  || { echo "error: buildah could not import $$tar as $(BASE_IMAGE)" >&2; exit 2; }; \
	rm -f $$tar; echo "built $(BASE_IMAGE)"

images: base-image
	@mkdir -p $(IMAGE_CACHE)/pip
	$(BUD) -f operator/Dockerfile -t codeintel/operator:$(VERSION) .
	$(BUD) -f indexer/Dockerfile --build-arg FAISS=cpu -t codeintel/indexer:$(VERSION) .
	$(BUD) -f searcher/Dockerfile -t codeintel/searcher:$(VERSION) .

images-gpu: base-image
	@mkdir -p $(IMAGE_CACHE)/pip
	$(BUD) -f indexer/Dockerfile --build-arg FAISS=gpu -t codeintel/indexer:$(VERSION)-gpu .

# The CodeIndex lifecycle with every Job and searcher run inside the images.
e2e-images: images $(STAMP)
	CODEINTEL_E2E_IMAGES=1 CODEINTEL_IMAGE_VERSION=$(VERSION) \
	  $(BIN)/python -m pytest tests/e2e/test_images_e2e.py tests/e2e/test_image_contents.py \
	  -k "not gpu" $(PYTEST_ARGS)

# What the GPU indexer image proves on a machine without a GPU.
e2e-images-gpu: images-gpu $(STAMP)
	CODEINTEL_E2E_IMAGES=1 CODEINTEL_IMAGE_VERSION=$(VERSION) \
	  $(BIN)/python -m pytest tests/e2e/test_image_contents.py -k gpu $(PYTEST_ARGS)
