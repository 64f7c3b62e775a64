# icl-compiler: `make run` (the main job on the bundled example) and `make test`.
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv run test test-fast lint bench fuzz clean

help:
	@echo "make run    compile the bundled few-shot model, evaluate it on held-out Omniglot: table, picture (builds .venv first)"
	@echo "make test   run the whole test suite"
	@echo "make bench  run the benchmarks (emulator vs onnxruntime, Lava, partitioning)"
	@echo "make fuzz   run the long fuzzing campaign"
	@echo "make lint   ruff"

venv: $(STAMP)

$(STAMP): pyproject.toml tools/find-python310.sh
	@py=$$(sh tools/find-python310.sh) || exit 1; \
	echo "building $(VENV) with $$py"; \
	rm -rf $(VENV) && "$$py" -m venv $(VENV) && \
	$(PY) -m pip install --quiet --upgrade pip && \
	$(PY) -m pip install --quiet -e '.[dev,examples]' && touch $(STAMP)

run: $(STAMP)
	$(PY) -m examples.run $(RUN_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check icl_compiler tests bench examples

bench: $(STAMP)
	$(PY) -m bench.run_all

fuzz: $(STAMP)
	$(PY) -m pytest -q tests/fuzz --fuzz-cases=10000

clean:
	rm -rf $(VENV) out .pytest_cache
