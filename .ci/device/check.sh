#!/usr/bin/env bash
# Run THERE (the GPU machine), from the repository root, as the whole device command:
#   bash .ci/device/check.sh            with carry [".whl", ".device-data"], timeout_s about 590
# One prepared pass that fits the 15-minute device budget (see README.md), in about 560 s:
#  1. HiDDeN's training throughput at the paper's 128x128 / 64 channels, fp32 against bf16 autocast, alone on the GPU
#     (issue 6);
#  2. at the same time, on the one GPU:
#     * SSCL-BW's quick profile over four independent owners (issue 7: is the mark learnt, and do the Ind-W / Ind-M
#       controls stay unclaimed?), stopped at DEADLINE_S so that the owners done still get their cross tests;
#     * notebook 08's Table 1 (HiDDeN 30 bits against AMUSE 16 and 9 bits at 128x128, quick profile), run from its
#       jupytext source (no Jupyter stack there; run_py_notebook.py). NB08_ARGS (default "-p hidden_steps 2000")
#       cuts the quick profile's 3,000 steps per model: at the ~16 steps/s measured while sharing the H100, three
#       models of 3,000 steps need ~560 s and the table is only written at the end; the caption names the steps.
# Everything it prints and writes lands in $OUT (7 files), also when a step hits its time limit. The limits count
# from the script's start (SECONDS), so pip and a cold `import torch` do not push the end past the call's limit.
# A dry run of the same steps on a CPU in about four minutes (the build machine, before a lease):
#   WORK=/tmp/dry PY=.venv/bin/python DEVICE=cpu HIDDEN_ARGS="--size 32 --channels 8 --steps 6" \
#     PROFILE=smoke:epochs=1,gen_iters=4,n_train=120,n_test=80,verify_m=20,width=4,amuse_images=8 \
#     NB08_ARGS="-p hidden_steps 3" bash .ci/device/check.sh
set -uo pipefail
PY="${PY:-python3}" PROFILE="${PROFILE:-quick}" DEVICE="${DEVICE:-cuda}" WORK="${WORK:-/tmp}"
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
  || exit 1
export PYTHONPATH="$WORK/site:$PWD" PYTHONUNBUFFERED=1 DOVLIB_DATA="$PWD/.device-data" DOVLIB_RUNS="$WORK/runs" \
  DOVLIB_REPORTS="$WORK/reports" MPLBACKEND=Agg OMP_NUM_THREADS=3
OUT="${OUT:-$WORK/out}"; mkdir -p "$OUT"
export TQDM_MININTERVAL=30  # progress bars (tqdm >= 4.66 reads this) rarely redraw: the reply's tail stays readable
{ date -u; echo "OUT=$OUT"; nvidia-smi -L
  "$PY" -c "import torch, torchvision; print('torch', torch.__version__, torchvision.__version__)"
} 2>&1 | tee "$OUT/env.txt"
timeout -k 10 "${HIDDEN_S:-60}" "$PY" benchmarks/hidden_throughput.py \
  ${HIDDEN_ARGS:---size 128 --channels 64 --steps 200} --batch-size 32 --precision fp32,auto --device "$DEVICE" \
  > "$OUT/hidden.txt" 2>&1
echo "hidden_throughput rc=$? at $(date -u +%T)" | tee -a "$OUT/env.txt"
END_S="${END_S:-570}"  # seconds after the start by which every step has stopped (the call's limit is about 590)
# sscl_draws stops training at DEADLINE_S (counted from its own start, after its imports); CROSS_S of DRAWS_S stay
# for stopping the workers, reloading the owners and the cross tests (not yet measured on a GPU: a guess, kept wide)
DRAWS_S="${DRAWS_S:-$((END_S - 30 - SECONDS))}"
( timeout -k 10 "$DRAWS_S" "$PY" benchmarks/sscl_draws.py --profile "$PROFILE" \
    --owners 4 --jobs 4 --deadline "${DEADLINE_S:-$((DRAWS_S - ${CROSS_S:-90}))}" --out "$OUT/draws" \
    > "$OUT/draws.txt" 2>&1
  echo "sscl_draws rc=$? at $(date -u +%T)" >> "$OUT/env.txt" ) &
( timeout -k 10 "${NB08_S:-$((END_S - SECONDS))}" "$PY" .ci/device/run_py_notebook.py \
    notebooks/08_amuse_plug_and_play.py -p profile "$PROFILE" -p tables 1 ${NB08_ARGS:--p hidden_steps 2000} \
    > "$OUT/nb08.txt" 2>&1
  echo "notebook 08 rc=$? at $(date -u +%T)" >> "$OUT/env.txt" ) &
wait
tar czf "$OUT/reports.tgz" -C "$WORK" reports 2>/dev/null
for f in hidden draws nb08; do echo "== $f.txt"; tr '\r' '\n' < "$OUT/$f.txt" | grep -v '^\s*$' | tail -n 30; done
echo "== env.txt"; cat "$OUT/env.txt"  # last, so the reply's tail always holds every step's exit code
