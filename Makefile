# Fresh machine: `make test` (install + tests), `make demo` (install + main job).
# Every install goes through constraints.txt (pinned torch/torchvision and friends).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

$(STAMP): setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Lint first (ruff.toml), then every test in 2 pytest-xdist workers that take tests from each
# other's queues (worksteal: 7.4 min, where a file per worker took 8.5); the tools run forked from
# tests/tool_server.py. Add `-m "not slow"` to skip the multi-process and layout tests.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -n 2 --dist worksteal tests

# The synthetic motion dataset, I3D R18 + 2 CGNL blocks trained on it, multi-view test.
# Runs again resume from output/demo/run (delete it for a fresh run).
demo: $(STAMP)
	$(PY) tools/make_synthetic_dataset.py output/demo/data --num-train 300 --workers 2
	$(PY) tools/train_net.py --cfg configs/demo/synthetic_cgnl.yaml
	$(PY) tools/test_net.py --cfg configs/demo/synthetic_cgnl.yaml

# Removes the virtualenv only; runs under output/ are kept.
clean:
	rm -rf $(VENV)
