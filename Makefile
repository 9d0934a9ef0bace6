# The two README commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

NODE_STAMP := web/node_modules/.installed
OPS := cornernet_tf/ops/_custom_ops.so
WEB_MODEL ?= exported/cornernet_tfjs
WEB_SAMPLE ?= $(firstword $(wildcard runs/shapes/val/*.png))

.PHONY: demo demo-squeeze demo-saccade finetune-demo test test-heavy test-fast lint benchmark clean web serve-web browser ops

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/cornernet-demo

# the same job for a small CornerNet-Squeeze (configs/tiny_squeeze.yaml)
demo-squeeze: $(STAMP)
	$(VENV)/bin/cornernet-demo --config tiny_squeeze --out runs/demo_squeeze --export exported/tiny_squeeze --skip-table

# the same job for a small CornerNet-Saccade (configs/tiny_saccade.yaml: saccade sampling,
# attention-guided test procedure, 255 x 255 shapes in runs/shapes_255)
demo-saccade: $(STAMP)
	$(VENV)/bin/cornernet-demo --config tiny_saccade --out runs/demo_saccade --export exported/tiny_saccade --skip-table

# the demo's model fine-tuned on three new classes against the same training from scratch
finetune-demo: $(STAMP)
	$(VENV)/bin/cornernet-demo --skip-table --finetune 400

# npm packages of the browser demo and its tests (@tensorflow/tfjs, playwright-core)
$(NODE_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# Debian's Chromium for the browser tests (the tests fail with the reason if it is missing)
browser:
	@test -x /usr/bin/chromium || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	} || echo "warning: could not install chromium; the browser tests will fail"

test: $(STAMP) $(OPS) $(NODE_STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest -m "not heavy"
	@echo "make test left out the tests marked heavy (half a minute or more each: see pyproject.toml); make test-heavy runs them, and CI runs both"

# the tests marked heavy (CI runs them after make test)
test-heavy: $(STAMP) $(OPS)
	$(PY) -m pytest -m heavy

# the compiled ops: corner pooling (C++ CPU kernels; CUDA kernels too when nvcc exists) and the
# Winograd transforms (CPU)
ops: $(STAMP)
	$(PY) custom_ops/build.py

$(OPS): $(STAMP) $(wildcard custom_ops/corner_pool/* custom_ops/winograd/*)
	$(PY) custom_ops/build.py

# the browser demo: web/dist from web/src, the vendored TF.js files and the models of $(WEB_MODEL)
# (one or more TF.js folders, each DIR or NAME=DIR; the page's picker offers them, the first first)
web: $(NODE_STAMP)
	node web/build.mjs $(foreach model,$(WEB_MODEL),--model $(model)) $(if $(WEB_SAMPLE),--sample $(WEB_SAMPLE))

serve-web: $(STAMP)
	$(PY) scripts/serve_web.py

# offline, a few minutes: no Hourglass-104, end-to-end, browser, package-registry or heavy tests;
# the compiled-op tests run when `make ops` has built them and are skipped (with the reason) if not
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow and not e2e and not web and not network and not heavy"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

benchmark: $(STAMP) $(OPS)
	$(PY) scripts/benchmark.py

# (the TF.js converter's venv lives in the user cache, ~/.cache/cornernet-tf/tfjs-venv: kept)
clean:
	rm -rf $(OPS) $(OPS).tf-version $(VENV) .pytest_cache .ruff_cache *.egg-info web/node_modules web/dist
