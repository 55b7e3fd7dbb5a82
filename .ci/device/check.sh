#!/usr/bin/env bash
# Run THERE (the GPU machine), from the repository root, as the whole device command:
#   bash .ci/device/check.sh            with carry [".whl", ".device-data"], timeout_s about 590
# One prepared pass that fits the 15-minute device budget (see README.md), in about 560 s:
#  1. HiDDeN's training throughput at the paper's 128x128 / 64 channels, fp32 against bf16 autocast, alone on the GPU
#     (issue 6);
#  2. at the same time, on the one GPU:
#     * SSCL-BW's quick profile over four independent owners (issue 7: is the mark learnt, and do the Ind-W / Ind-M
#       controls stay unclaimed?), stopped at DEADLINE_S so that the owners done still get their cross tests;
#     * notebook 08's Table 1 (HiDDeN 30 bits against AMUSE 16 and 9 bits at 128x128, quick profile: 3,000 steps
#       per model), run from its jupytext source (no Jupyter stack there; run_py_notebook.py).
# Everything it prints and writes lands in $OUT (7 files), also when a step hits its time limit.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 DOVLIB_DATA="$PWD/.device-data" DOVLIB_RUNS=/tmp/runs \
  DOVLIB_REPORTS=/tmp/reports MPLBACKEND=Agg OMP_NUM_THREADS=3
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
{ date -u; nvidia-smi -L
  python3 -c "import torch, torchvision; print('torch', torch.__version__, torchvision.__version__)"; } 2>&1 | tee "$OUT/env.txt"
timeout "${HIDDEN_S:-60}" python3 benchmarks/hidden_throughput.py --size 128 --channels 64 --batch-size 32 \
  --steps 200 --precision fp32,auto --device cuda > "$OUT/hidden.txt" 2>&1
echo "hidden_throughput rc=$? at $(date -u +%T)" | tee -a "$OUT/env.txt"
( timeout "${DRAWS_S:-400}" python3 benchmarks/sscl_draws.py --profile quick --owners 4 --jobs 4 \
    --deadline "${DEADLINE_S:-330}" --out "$OUT/draws" > "$OUT/draws.txt" 2>&1
  echo "sscl_draws rc=$? at $(date -u +%T)" >> "$OUT/env.txt" ) &
( timeout "${NB08_S:-470}" python3 .ci/device/run_py_notebook.py notebooks/08_amuse_plug_and_play.py \
    -p profile quick -p tables 1 > "$OUT/nb08.txt" 2>&1
  echo "notebook 08 rc=$? at $(date -u +%T)" >> "$OUT/env.txt" ) &
wait
tar czf "$OUT/reports.tgz" -C /tmp reports 2>/dev/null
cat "$OUT/env.txt"; tail -n 30 "$OUT/hidden.txt" "$OUT/draws.txt" "$OUT/nb08.txt"
