#!/usr/bin/env bash
# Run THERE (the GPU machine), from the repository root, as the whole device command:
#   bash .ci/device/check.sh            with carry [".whl", ".device-data"]
# One prepared pass that fits the 15-minute device budget (see README.md): SSCL-BW's quick profile over four
# independent owners at once (issue 7: is the mark learnt, and do the controls stay unclaimed?), then HiDDeN's
# throughput and accuracy at the paper's 128x128 / 64 channels per precision (issue 6). Everything it prints and
# writes lands in $OUT, also when a step hits its time limit.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 DOVLIB_DATA="$PWD/.device-data" DOVLIB_RUNS=/tmp/runs
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
{ nvidia-smi -L; python3 -c "import torch, torchvision; print('torch', torch.__version__, torchvision.__version__)"; } \
  2>&1 | tee "$OUT/env.txt"
timeout "${DRAWS_S:-420}" python3 benchmarks/sscl_draws.py --profile quick --owners 4 --jobs 4 --out "$OUT/draws" \
  2>&1 | tee "$OUT/draws.txt"
timeout "${HIDDEN_S:-100}" python3 benchmarks/hidden_throughput.py --size 128 --channels 64 --batch-size 32 \
  --steps 200 --precision fp32,auto --device cuda 2>&1 | tee "$OUT/hidden.txt"
