# The two commands of the quick start. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench fuzz lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned, so that pip takes the CPU build and not the CUDA one
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# Compile Cerebras-GPT 111M at its full 2048-token context, place and simulate it on a WSE-2,
# and write its report, placement, timeline and mesh picture to out/.
demo: $(STAMP)
	$(BIN)/wafer compile cerebras-gpt-111m --target wse2 --batch 4 -o out/cerebras-gpt-111m
	cat out/cerebras-gpt-111m/report.txt

test: $(STAMP)
	$(BIN)/ruff check waferscale tests benchmarks
	$(BIN)/python -m pytest tests

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

lint: $(STAMP)
	$(BIN)/ruff check waferscale tests benchmarks

clean:
	rm -rf $(VENV) out
