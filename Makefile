PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The suite on the oldest thriftpy2 that pyproject.toml accepts, in a venv of its own.
MIN_VENV := .venv-min
THRIFTPY2_MIN := $(shell sed -n 's/^ *"thriftpy2>=\([0-9.]*\)".*/\1/p' pyproject.toml)

.PHONY: test test-min demo bench-quick clean

# $(call install,VENV[,PIP_ARGS]): VENV with the package editable and its test
# extra. python-gssapi (the kerberos-test extra) builds from source against
# libkrb5-dev, whose krb5-config must be on PATH; without it the Kerberos tests
# skip themselves.
define install
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q --upgrade pip
	$(1)/bin/pip install -q -e '.[test]' $(2)
	if command -v krb5-config >/dev/null; then \
		$(1)/bin/pip install -q -e '.[test,kerberos-test]' $(2); \
	else \
		echo "Kerberos tests will be skipped: install krb5-kdc krb5-admin-server libkrb5-dev"; \
	fi
endef

$(BIN)/.installed: pyproject.toml setup.py
	$(call install,$(VENV))
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# thriftpy2 builds from source there (a C compiler is needed). The lint, type
# and packaging checks judge the source, not thriftpy2's release (old ones
# ship no type hints): they run in `make test` only.
$(MIN_VENV)/.installed: pyproject.toml setup.py
	test -n "$(THRIFTPY2_MIN)" || { echo "no thriftpy2>= bound in pyproject.toml"; exit 1; }
	$(call install,$(MIN_VENV),'thriftpy2==$(THRIFTPY2_MIN)')
	echo '*' > $(MIN_VENV)/.gitignore
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
