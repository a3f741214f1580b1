# The two commands of the quick start. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-browser bench fuzz lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so that pip takes the CPU build and not the CUDA one
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

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
