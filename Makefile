# The two commands of the README. Both install what is missing, say what they
# install, and are safe to repeat.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test install dataset bench ablate clean

run: install dataset
	dvc repro

test: install dataset
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

install: $(STAMP)

$(BIN)/python:
	@echo "[make] creating virtualenv $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "[make] installing sslflow and its dependencies into $(VENV) (torch, DALI, webdataset, dvc, prefect, ...)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

dataset:
	@if [ ! -f $(FMNIST) ]; then \
	  echo "[make] installing Debian's dataset-fashion-mnist (the embedded default source)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

# The lecture's ablations in small, each at the default budget and otherwise the default run: three
# two-point SimCLR sweeps and SimCLRv2 with its memory bank (dvc experiments through the Prefect
# sweep flow), then the report redrawn with their figures and tables. Only the changed method's
# stages rerun in an experiment; `make run`'s results are the baseline.
ABLATE_SWEEPS := temperature:pretrain.simclr.temperature=0.05,0.5 \
                 proj-dim:pretrain.simclr.proj_dim=32,512 \
                 batch-size:pretrain.simclr.batch_size=64,256 \
                 memory-bank:pretrain.simclr_v2.queue_size=4096

ablate: run
	@echo "[make] ablations: 6 SimCLR experiments (temperature, projection dim, batch size) and SimCLRv2"
	@echo "[make] with its memory bank, each a pretraining at the default budget plus its evaluation:"
	@echo "[make] ~4 min each, ~28 min on 2 cores"
	@for sweep in $(ABLATE_SWEEPS); do \
	  sslflow flow sweep --name $${sweep%%:*} --grid $${sweep#*:} || exit $$?; \
	done
	dvc repro --force --single-item report

bench: install dataset
	sslflow bench loader
	sslflow bench pretrain

clean:
	rm -rf data/shards data/features models metrics reports dvclive
