#!/usr/bin/env bash
# The unsupervised-MT benchmark (benchmarks/unmt.py, issue 17) on a lent GPU, in steps that each
# fit one device command (at most 10 minutes): the stages resume, so later calls reuse what earlier
# ones finished.
#   bash scripts/unmt_gpu.sh pack                 # here, on the CPU: corpora + vocabulary into .gpu_unmt/
#   run(command="STEP=1 bash scripts/unmt_gpu.sh", carry=[".gpu_unmt"])   # pretraining (xlm, mass) + copy, wbw
#   run(command="STEP=2 bash scripts/unmt_gpu.sh", carry=[".gpu_unmt"])   # xlm + mass unsupervised, supervised
#   OUT=/tmp/unmt_check P=0.1 U=0.15 N=10 SIZE=400 DB=tests/fixtures/bible_mini.db DEVICE=cpu \
#     STEP=all bash scripts/unmt_gpu.sh           # plumbing check on the CPU, a few minutes
# Results: $G/results.json and the table on stdout; $OUT (the device tool's) gets a copy.
set -u
PAIRS=${PAIRS:-en-fr} P=${P:-2} U=${U:-3} N=${N:-500} SIZE=${SIZE:-8000} STEP=${STEP:-1}
DEVICE=${DEVICE:-cuda} DTYPE=${DTYPE:-bfloat16}
G=${G:-runs/bench_unmt_gpu}
OUT=${OUT:-/tmp/gpu_out}
PY=${PY:-python3}
if [ "${1:-}" = pack ]; then
  set -e
  PY=.venv/bin/python
  $PY benchmarks/unmt.py --out "$G" --pairs "$PAIRS" --size "$SIZE" --systems copy  # corpora + vocab + copy
  mkdir -p .gpu_unmt
  tar -cJf .gpu_unmt/unmt_data.tar.xz "$G"/bible_halves "$G"/bible "$G"/vocab
  du -sh .gpu_unmt
  exit 0
fi
mkdir -p "$OUT" "$G"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
if [ -f .gpu_unmt/unmt_data.tar.xz ]; then tar -xJf .gpu_unmt/unmt_data.tar.xz || exit 1; fi
DB_ARGS=()
if [ -n "${DB:-}" ]; then DB_ARGS=(--db "$DB"); fi
SETS=(--set "trainer.device=$DEVICE" --set "trainer.dtype=$DTYPE" --set trainer.valid_every=200)
if [ "$DEVICE" = cpu ]; then  # the plumbing check: tiny models
  SETS=(--set trainer.device=cpu --set model.d_model=32 --set model.n_layers=1 --set model.n_heads=2
        --set model.d_ff=64 --set trainer.valid_every=0 --set data.max_tokens=512)
fi
case "$STEP" in
  1) STAGE=(--systems copy,wbw,xlm,mass --pretrain-only) ;;   # the shared pretraining and the baselines
  2|all) STAGE=(--systems copy,wbw,xlm,mass,supervised) ;;     # reuses what step 1 finished
  *) echo "STEP must be 1, 2 or all" >&2; exit 2 ;;
esac
$PY benchmarks/unmt.py --out "$G" --pairs "$PAIRS" --pretrain "$P" --unmt "$U" --n-test "$N" --size "$SIZE" \
  "${STAGE[@]}" "${DB_ARGS[@]}" "${SETS[@]}" 2>&1 | tail -40
status=${PIPESTATUS[0]}
cp "$G"/results.json "$OUT"/ 2>/dev/null
exit "$status"
