# Two commands for a fresh machine:
#   make report   # environment (if missing), data, the whole study at the default profile, HTML report
#   make test     # environment (if missing), unit tests, notebook regression (nbval, smoke profile)
# Variables: PROFILE (paper | cpu | smoke; default cpu without a GPU, paper with one),
#            DATA (a CIFAR-10 source; default ../shared/datasets/cifar10-jpeg.tar.gz when present),
#            FORCE=1 to recompute every step, SET="finetune_epochs=2 ..." to change profile settings,
#            SEEDS="0 1 2" for the multi-seed study (notebook 07; recorded in the run's study.json),
#            STORED=1 to compute nothing and show the stored results that are current.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED_ARCHIVE := ../shared/datasets/cifar10-jpeg.tar.gz
DATA ?= $(if $(PRUNING_DATA_SOURCE),$(PRUNING_DATA_SOURCE),$(if $(wildcard $(SHARED_ARCHIVE)),$(abspath $(SHARED_ARCHIVE)),))
PROFILE ?=
NBVAL_RUN_DIR := data/runs/nbval
export PRUNING_DATA_SOURCE := $(DATA)
# This checkout's package first on every Python's path (tests, nbval's and papermill's kernels, benchmarks): the
# virtualenv's editable install may point at another checkout that shares it.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: env report test unit nbval nbval-other-kernels nbval-refs benchmarks clean

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[deploy]'
	$(PY) -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $(STAMP)

report: env
	$(PY) -m pruning_utils.report $(if $(PROFILE),--profile $(PROFILE)) $(if $(FORCE),--force) $(if $(STORED),--stored) $(if $(SEEDS),--seeds "$(SEEDS)") $(foreach s,$(SET),--set $(s))

test: unit

# Two pytest workers, one thread each (two threads each would spin against each other on 2 cores), one test file per
# worker at a time, the longest first (tests/conftest.py). The notebook regression (nbval, below) is one of those
# files (tests/test_nbval.py), so it runs beside the others.
unit: env
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=15 tests  # the 15 slowest

# The seven notebooks at the smoke profile (generated data) against committed reference outputs (also run by
# `make unit`, as tests/test_nbval.py).
nbval: env
	rm -rf $(NBVAL_RUN_DIR)
	cd tests/nbval && ../../$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-sanitize-with sanitize.cfg \
		01_train.ipynb 02_sensitivity.ipynb 03_prune_finetune.ipynb 04_weight_dists.ipynb 05_activations.ipynb 06_beyond.ipynb \
		07_across_seeds.ipynb

# nbval computed as on another CPU: PyTorch's AVX2 kernels (not AVX-512), oneDNN's convolutions at AVX2, one
# thread. The numbers come out different (fp32 rounding grows through training); the checked cells must still pass.
nbval-other-kernels: env
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=1 $(MAKE) --no-print-directory nbval

# Regenerate the nbval references after an intended change of a notebook or of smoke results.
nbval-refs: env
	rm -rf $(NBVAL_RUN_DIR)
	for nb in 01_train 02_sensitivity 03_prune_finetune 04_weight_dists 05_activations 06_beyond; do \
		$(PY) -m papermill -k python3 --cwd notebooks notebooks/$$nb.ipynb tests/nbval/$$nb.ipynb \
			-p profile smoke -p run_dir $(NBVAL_RUN_DIR) --no-progress-bar || exit 1; \
	done
	$(PY) -m papermill -k python3 --cwd notebooks notebooks/07_across_seeds.ipynb tests/nbval/07_across_seeds.ipynb \
		-p profile smoke -p run_dir $(NBVAL_RUN_DIR) -y "seeds: [0, 1]" --no-progress-bar

benchmarks: env
	$(PY) benchmarks/sensitivity_scan.py
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/deployment.py

clean:
	rm -rf data/cache data/runs/smoke data/runs/nbval .pytest_cache
