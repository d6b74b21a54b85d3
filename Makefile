# Two commands on a fresh machine: `make demo` runs the quickstart study, `make test` passes the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all lint ui clean

install: $(STAMP)

# torch first, pinned to the local CPU build (a bare `torch` would pull the CUDA build); torchattacks without
# its dependencies (its pins break resolution against mlflow and its code needs neither requests nor torchvision).
# The ray extra (executor: ray) is installed so that the tests run a real local Ray instance, the dp extra (Opacus,
# whose requirements leave torch as it is) so that they train a DP-SGD model.
# The tf extra (TensorFlow, for Keras models) is installed so that the tests cover the Keras path: pinned and
# after the rest: resolved together with everything else, pip ran over 10 minutes here, downloading gigabytes.
$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q "torch>=2.2"
	$(BIN)/pip install -q -e ".[dev,ray,dp]"
	$(BIN)/pip install -q "tensorflow==2.21.0" || $(BIN)/pip install -q -e ".[tf]"
	$(BIN)/pip install -q --no-deps "torchattacks==3.5.1"
	touch $(STAMP)

demo: install
	$(BIN)/advbridge run scenarios/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q -m ""

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ui: install
	$(BIN)/advbridge ui

clean:
	rm -rf $(VENV) mlruns/mlflow.db mlruns/artifacts
