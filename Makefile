# The two commands of the quick start. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions with hashes of every runtime and test dependency (torch is the CPU build from the
# machine's find-links /opt/wheels). `make lock` refreshes it; docs/install.md says how and when.
LOCK := requirements.lock
LOCKVENV := /tmp/waferscale-lockvenv
PIP_TOOLS := pip-tools==7.7.0

CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-browser bench fuzz lint lock clean

# Installs exactly the lock (hash-checked), then this package alone, built by the locked setuptools.
# Depends on the lock, so a refreshed lock reinstalls on the next make.
$(STAMP): $(LOCK) pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check || { echo "requirements.lock lacks a dependency of pyproject.toml: run make lock"; exit 1; }
	$(BIN)/python -c "from waferscale.runtime.pe_tree_jit import warm; warm()"  # compiled into numba's cache now
	touch $(STAMP)

# Re-resolves pyproject.toml's dependencies and its [test] extra to the newest versions served, with
# hashes, into $(LOCK). pip-compile runs from a scratch venv, never from .venv.
lock:
	test -x $(LOCKVENV)/bin/pip-compile || \
		{ $(PYTHON) -m venv $(LOCKVENV) && $(LOCKVENV)/bin/pip install --quiet $(PIP_TOOLS); }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCKVENV)/bin/pip-compile --upgrade --extra test --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --output-file $(LOCK) pyproject.toml
	! grep -i '^nvidia-' $(LOCK)  # the CPU torch has no CUDA dependencies; their presence means the CUDA torch won
	grep -q '^torch==.*+cpu ' $(LOCK)

# Compile Cerebras-GPT 111M at its full 2048-token context, place and simulate it on a WSE-2,
# and write its report, placement, timeline, mesh picture and interactive report.html to out/.
demo: $(STAMP)
	$(BIN)/wafer compile cerebras-gpt-111m --target wse2 --batch 4 -o out/cerebras-gpt-111m
	cat out/cerebras-gpt-111m/report.txt
	@echo "open out/cerebras-gpt-111m/report.html in a browser for the interactive report"

# The whole suite, the browser test of report.html included (Debian's chromium is installed first
# when /usr/bin/chromium is missing; the browser test then fails rather than skips without it).
test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check waferscale tests benchmarks
	WAFER_REQUIRE_BROWSER=1 WAFER_SCREENSHOTS=out/browser-test $(BIN)/python -m pytest tests

# Debian's Chromium, for the browser test (Playwright drives it; Playwright's own browser download is
# not used). A file target: skipped once /usr/bin/chromium exists.
$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# The browser test alone: report.html driven in headless Chromium. Screenshots of the pages it drove
# are left in out/browser-test/ for a person to look at.
test-browser: $(STAMP) $(CHROMIUM)
	WAFER_REQUIRE_BROWSER=1 WAFER_SCREENSHOTS=out/browser-test $(BIN)/python -m pytest tests -m browser

fuzz: $(STAMP)
	$(BIN)/python benchmarks/fuzz.py --cases 10000

bench: $(STAMP)
	$(BIN)/python benchmarks/compile_zoo.py
	$(BIN)/python benchmarks/fidelity.py
	$(BIN)/python benchmarks/wafer_zoo.py
	$(BIN)/python benchmarks/fusion.py
	$(BIN)/python benchmarks/streaming.py
	$(BIN)/python benchmarks/train_scaling.py
	$(BIN)/python benchmarks/paper_runs.py
	$(BIN)/wafer bench -q -o benchmarks/results/bench
	$(BIN)/python benchmarks/calibrate.py
	$(BIN)/python benchmarks/pe_speed.py
	$(BIN)/python benchmarks/report_html.py --runs 9 --screenshots docs

lint: $(STAMP)
	$(BIN)/ruff check waferscale tests benchmarks

clean:
	rm -rf $(VENV) out
