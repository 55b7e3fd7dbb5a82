# dovlib: the two commands a new user needs are `make reproduce` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= smoke
INSTALL_KIB := 7340032
# the offline subsets: ../shared/data where it exists, else data/ (where `make offline-data` builds them)
export DOVLIB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),$(abspath data))

.PHONY: install test unit reproduce notebooks benchmark clean-reports offline-data

# Create .venv if missing and install dovlib with its dev extra (pins torch==2.14.1 torchvision==0.29.1).
# pip stops half-way with "No space left on device" where the disk is short: say so before it starts (a CI run once
# failed that way after 64 s).
$(VENV)/.installed: pyproject.toml
	@avail=$$(df -Pk . | awk 'NR == 2 {print $$4}'); \
	if [ -n "$$avail" ] && [ "$$avail" -lt $(INSTALL_KIB) ]; then \
	  echo "WARNING: make install needs about 7 GiB free for $(VENV) (6.5 GiB on the build machine, most of it" \
	       "torch's CUDA build); $$((avail / 1048576)) GiB free here: pip may stop with 'No space left on device'" >&2; fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Without ../shared/data: make cifar10-subset and mnist-offline from the official downloads (needs internet once).
offline-data: install
	$(PY) -m dovlib.data build-offline --dest $(abspath data)

# Unit tests of dovlib plus nbval over the smoke profile of every notebook.
test: install
	$(PY) -m pytest tests notebooks --nbval-lax

unit: install
	$(PY) -m pytest tests

# Regenerate the clean .ipynb files from their jupytext sources (notebooks/*.py): --update keeps the cell ids,
# clear-output drops the outputs a JupyterLab session left in them (as committed: no outputs).
notebooks: install
	$(VENV)/bin/jupytext --update --to ipynb notebooks/[0-9][0-9]_*.py
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace --log-level WARN notebooks/[0-9][0-9]_*.ipynb

# Run every notebook with papermill on PROFILE and write reports/ (index.html, summary.md).
reproduce: install
	$(PY) -m dovlib.reproduce --profile "$(PROFILE)" $(ARGS)

benchmark: install
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/imwm_throughput.py
	$(PY) benchmarks/hidden_throughput.py

clean-reports:
	rm -rf reports/[0-9][0-9]_* reports/index.html reports/summary.md

# --- reproduce / sweep / index (dovlib.reproduce, dovlib.sweep, dovlib.index; see docs/reproduce.md) ---------
# make reproduce PROFILE=quick ARGS="--force --only 03,04"      (ARGS: any `python -m dovlib.reproduce` option)
# make sweep NB=notebooks/04_ablation.ipynb GRID="-p eps 1/255,2/255 -p rate 0.01,0.1" [EXECUTOR=slurm] [ARGS=...]
# make index                                                    (rebuild reports/index.html and summary.md only)
ARGS ?=
NB ?=
GRID ?=
EXECUTOR ?= local
.PHONY: sweep index

sweep: install
	@test -n "$(NB)" || { echo "usage: make sweep NB=notebooks/04_ablation.ipynb GRID='-p eps 1/255,2/255' [EXECUTOR=local|slurm] [PROFILE=quick]"; exit 2; }
	$(PY) -m dovlib.sweep $(NB) $(GRID) --profile "$(PROFILE)" --executor $(EXECUTOR) $(ARGS)

index: install
	$(PY) -m dovlib.index
