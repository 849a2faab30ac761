PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: test demo bench-quick clean

$(BIN)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

demo: $(BIN)/.installed
	$(BIN)/python -m green_happybase.bench

bench-quick: $(BIN)/.installed
	$(BIN)/python -m green_happybase.bench --quick

clean:
	rm -rf $(VENV) build *.egg-info
