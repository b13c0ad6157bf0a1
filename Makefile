# `make test` and `make demo` each create or refresh .venv, install the
# package with its dev extras, and run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export TF_CPP_MIN_LOG_LEVEL ?= 1

.PHONY: test demo bench lint data clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian's Fashion-MNIST files, the offline real data set (needs root + apt).
data:
	@if [ ! -f $(FMNIST) ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	fi

test: $(STAMP) data
	$(BIN)/python -m pytest -n 2 --durations=15

demo: $(STAMP) data
	$(BIN)/keras-damped models --pattern '*resnet110' --pattern '*resnet164' --pattern '*resnext29_*'

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
