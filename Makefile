PYTHON ?= python3

.PHONY: install test bench demo bench-train

install:
	$(PYTHON) -m pip install -e '.[test]'

test:
	$(PYTHON) -m pytest -q

bench:
	$(PYTHON) -m pydarknet.bench

demo:
	$(PYTHON) -m pydarknet detector test cfg/shapes.data cfg/shapes-tiny.cfg data/shapes-tiny.weights data/shapes.jpg -thresh .25

bench-train:
	$(PYTHON) -m pydarknet.bench --train
