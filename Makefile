# README's two commands: `make train` and `make test`. Each creates .venv on first use.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TORCH  := torch==2.13.0
EXTRAS := dev,bench,ray

.PHONY: train test lint lock demo demo-packing benchmark clean

# constraints.txt holds the dependency versions the tests passed with, so every install gets them.
$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# Pin the CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
	$(VENV)/bin/pip install --quiet $(TORCH)
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

# Regenerate constraints.txt from what .venv has installed (pip freeze without the project itself;
# torch as its plain version, which pip resolves to the CPU build). To refresh the versions: change
# .venv (a dependency added to pyproject.toml is installed, unconstrained, by the next `make test`;
# `$(VENV)/bin/pip install -U -e ".[$(EXTRAS)]"` moves everything to the newest allowed versions),
# check it with `make test`, then `make lock` and commit constraints.txt.
lock: $(STAMP)
	(echo "# Tested dependency versions: written by \`make lock\` (see Makefile), do not edit by hand."; \
	 $(VENV)/bin/pip freeze --exclude-editable | sed 's/^torch==.*/$(TORCH)/') > constraints.txt
	touch $(STAMP)

# The main job: train the default policy (Panda, cylinder peg, graph network, PPO), evaluate it on
# 100 held-out episodes and record rollout videos. Everything lands in $(RUN_DIR).
RUN_DIR ?= outputs/train-$(shell date +%Y%m%d-%H%M%S)
train: $(STAMP)
	$(PY) scripts/train.py hydra.run.dir=$(RUN_DIR)
	$(PY) scripts/evaluate.py checkpoint=$(RUN_DIR) episodes=100 video=true

# The scripted (non-learned) controller: success over 100 seeds and a video.
demo: $(STAMP)
	$(PY) scripts/scripted_insertion.py

# The scripted packed-objects controllers: push-then-insert vs straight descent over 100 seeds, and a video.
demo-packing: $(STAMP)
	$(PY) scripts/scripted_packing.py

test: $(STAMP)
	$(PY) -m pytest tests

# Lint and format check (CI runs it; `$(VENV)/bin/ruff format .` fixes the formatting).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

benchmark: $(STAMP)
	$(PY) scripts/benchmark_env.py

clean:
	rm -rf $(VENV) outputs multirun
