# The two commands of the README. Both install what is missing, say what they
# install, and are safe to repeat.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test install dataset bench clean

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

bench: install dataset
	sslflow bench loader
	sslflow bench pretrain

clean:
	rm -rf data/shards data/features models metrics reports dvclive
