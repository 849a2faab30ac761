PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The suite on the oldest thriftpy2 that pyproject.toml accepts, in a venv of its own.
MIN_VENV := .venv-min
THRIFTPY2_MIN := $(shell sed -n 's/^ *"thriftpy2>=\([0-9.]*\)".*/\1/p' pyproject.toml)

.PHONY: test test-min demo bench-quick clean

# python-gssapi (the kerberos-test extra) builds from source against
# libkrb5-dev, whose krb5-config must be on PATH; without it the Kerberos
# tests skip themselves.
$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	if command -v krb5-config >/dev/null; then \
		$(BIN)/pip install -q -e '.[test,kerberos-test]'; \
	else \
		echo "Kerberos tests will be skipped: install krb5-kdc krb5-admin-server libkrb5-dev"; \
	fi
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# The lint, type and packaging checks judge the source, not thriftpy2's
# release (old ones ship no type hints): they run in `make test` only.
$(MIN_VENV)/.installed: pyproject.toml setup.py
	test -n "$(THRIFTPY2_MIN)" || { echo "no thriftpy2>= bound in pyproject.toml"; exit 1; }
	$(PYTHON) -m venv $(MIN_VENV)
	echo '*' > $(MIN_VENV)/.gitignore
	$(MIN_VENV)/bin/pip install -q --upgrade pip
	$(MIN_VENV)/bin/pip install -q -e '.[test]' 'thriftpy2==$(THRIFTPY2_MIN)'
	touch $@

test-min: $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -c 'import thriftpy2; print("thriftpy2", thriftpy2.__version__)'
	$(MIN_VENV)/bin/python -m pytest -q --ignore=tests/test_static.py \
		--ignore=tests/test_packaging.py

demo: $(BIN)/.installed
	$(BIN)/python -m green_happybase.bench

bench-quick: $(BIN)/.installed
	$(BIN)/python -m green_happybase.bench --quick

clean:
	rm -rf $(VENV) $(MIN_VENV) build dist *.egg-info
