# Two commands on a fresh Debian machine: `make demo` and `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pgt-installed
DEMO   ?= runs/demo

.PHONY: demo test test-quick lint system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV) || (scripts/install-system-deps.sh && python3 -m venv $(VENV))
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel of torch 2.13.0 first: a bare `torch` requirement would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@scripts/install-system-deps.sh

demo: $(STAMP) system-deps
	$(VENV)/bin/pgt demo --out $(DEMO)

# The linter and formatter first (seconds), then the suite.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) system-deps lint
	$(PY) -m pytest -n 2 --dist loadgroup

# Everything but the tests marked slow (torchrun launches, full-vocabulary builds): for a quick check.
test-quick: $(STAMP) system-deps
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
