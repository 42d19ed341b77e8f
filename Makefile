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

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) tools/model_info.py --cfg configs/MiniKinetics/I3D_8x8_R50_CGNL1.yaml

clean:
	rm -rf $(VENV) output
