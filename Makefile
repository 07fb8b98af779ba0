# Two entry points for a newcomer (see README.md):
#   make demo   - install, then replays -> index -> shards -> TFDS -> short training + evaluation
#   make test   - install, then the test suite
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
# the installed commands (pyproject.toml [project.scripts])
BIN    := $(VENV)/bin
REPLAYS ?= ../shared/replays/python-sc2
OUT    ?= demo_out
STEPS  ?= 100
BATCH  ?= 16
# Five replays are too few for a 90/5/5 split to hold out any: the demo keeps
# a larger held-out share and evaluates on the validation replay (one game;
# trainers.evaluate says so).
SPLITS ?= train=0.6,validation=0.2,test=0.2
EVAL_SPLIT ?= validation
# The shipped FullyConv (models/, docs/results.md) and a test-split game of
# its training corpus: the demo ends with its win-probability curve.
MODEL  ?= models/fully_conv
PREDICT_REPLAY ?= ../shared/public-replays/Derekioh__SC2-ML/Games_Montreal_441.SC2Replay

.PHONY: install demo test clean

$(VENV)/.installed: pyproject.toml requirements-pysc2.txt
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (s2protocol imports imp)"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dask,recipes]'
	# pysc2 4.0.0 declares enum34 and other packages it does not need: no deps.
	$(PY) -m pip install --quiet --no-deps -r requirements-pysc2.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/sc2-scan --replays '$(REPLAYS)' --out $(OUT)/scan
	$(BIN)/sc2-pipeline --replays '$(REPLAYS)' --out $(OUT)/data --splits $(SPLITS) --overwrite
	$(BIN)/sc2-tfds-build --data $(OUT)/data --out $(OUT)/tfds
	$(BIN)/sc2-train --data $(OUT)/data --model fully_conv --out $(OUT)/run \
	    --steps $(STEPS) --batch_size $(BATCH)
	$(BIN)/sc2-evaluate --data $(OUT)/data --run $(OUT)/run --split $(EVAL_SPLIT)
	@echo "--- the shipped model $(MODEL) on a game it never trained on (held out in its protocol):"
	$(BIN)/sc2-predict --run $(MODEL) --replay '$(PREDICT_REPLAY)' --out $(OUT)/predict

test: install
	$(PY) -m pytest -q -p no:cacheprovider --timeout 900 tests

clean:
	rm -rf $(OUT)
