PYTHON ?= python3

.PHONY: install test bench

install:
	$(PYTHON) -m pip install -e '.[test]'

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m pydarknet.bench
