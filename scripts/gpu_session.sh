#!/usr/bin/env bash
# One GPU session of the benchmarks that 2 CPU cores cannot afford, all sharing one GPU at once.
# PLAN=1 (stop 9's session, the GPU rows of benchmarks/RESULTS.md):
#   - benchmarks/mt_pretraining.py, low-resource en->de (2,000 pairs), scratch / MASS / XLM in
#     parallel, 6 minutes each (issue 3);
#   - benchmarks/summarization.py, UNILM and MASS in parallel, 6 minutes each (issue 3);
#   - the LASER-style embedder (configs/laser_bible.yaml, bigger batches) in the time left (issue 4).
# PLAN=2 (the follow-ups it left):
#   - the same low-resource MT with early stopping on validation CE (trainer.best_metric), all
#     three systems, so scratch's overfitting is not what separates them;
#   - UNILM summarization as a prefix LM (seq2seq.corruption=causal), the same budget as PLAN=1's
#     UNILM (R1 25.68 with 70% masking), and with 2 of its 6 minutes pretraining instead of 3.5
#     (UNILMv2's pseudo-masking, R1 6.77 against causal's 14.41 on the CPU, is left out);
#   - the embedder with 2x larger batches (more in-batch negatives), in the time left.
# PLAN=3: the embedder alone on the GPU with 4x larger batches (END=300 fits a 7-minute device budget).
# PLAN=4 (what PLAN=2 left): the low-resource MT with early stopping on validation BLEU
#   (seq2seq.valid_generate=200, trainer.best_metric=bleu/avg, max) instead of CE, which PLAN=2
#   showed stops far too early; UNILM causal summarization with 1 of its 6 minutes pretraining
#   (3.5 gave R1 37.3, 2 gave 39.4); the embedder with PLAN=2's batches in the time left.
# Inputs (git-ignored, packed beforehand into .gpu/ by `bash scripts/gpu_session.sh pack` on the CPU
# machine): data/bible10 + runs/vocab_bible10, data/bible + runs/bench_mt/vocab, data/debian (en) +
# runs/bench_sum/{vocab,test}, and the rouge-score / nltk / defusedxml wheels. Results land in
# runs/gpu/ and, packed, in $OUT.
#
#   bash scripts/gpu_session.sh pack                        # here: fill .gpu/ (~38 MB), then
#   run(command="END=490 PLAN=2 bash scripts/gpu_session.sh", carry=[".gpu"])   # on the GPU machine
#   G=/tmp/gpu_check B=0.4 P=0.2 END=200 N=20 BATCH=2048 PLAN=2 bash scripts/gpu_session.sh   # plumbing check, CPU
if [ "${1:-}" = pack ]; then
  set -e
  mkdir -p .gpu/whl
  tar -cJf .gpu/laser_data.tar.xz data/bible10 runs/vocab_bible10
  tar -cJf .gpu/mt_data.tar.xz data/bible runs/bench_mt/vocab
  tar -cJf .gpu/sum_data.tar.xz data/debian/manifest.json data/debian/{train,valid,test}.en{,.desc,.syn,.ids} \
    runs/bench_sum/vocab runs/bench_sum/test
  .venv/bin/python -m pip wheel -q --no-deps -w .gpu/whl rouge-score==0.1.2 nltk defusedxml
  du -sh .gpu
  exit 0
fi
set -u
T0=$(date +%s)
B=${B:-6} P=${P:-3.5} END=${END:-480} N=${N:-1000} PLAN=${PLAN:-1}  # minutes per system, of which pretraining; laser's end (s); test size
OUT=${OUT:-/tmp/gpu_out}
G=${G:-runs/gpu}
mkdir -p "$OUT" "$G"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=${PY:-python3}
X="$PY -m xling.cli"
since() { echo $(( $(date +%s) - T0 )); }

for f in .gpu/*.tar.xz; do tar -xJf "$f" || exit 1; done
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $G/gpu.txt
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a $G/gpu.txt
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 > $G/gpu_util.csv 2>&1 &
SMI=$!
echo "setup done at $(since) s"

# --- issue 3: generation benchmarks, one process per system (each trains on the shared GPU)
mt() {  # mt NAME SYSTEM [--ft-set ...]
  local name=$1 sys=$2; shift 2
  timeout $((END + 30)) $PY benchmarks/mt_pretraining.py --out $G/$name --vocab runs/bench_mt/vocab --pairs en-de \
    --max-examples 2000 --budget $B --pretrain $P --n-test $N --systems $sys "$@" > $G/$name.log 2>&1 &
}
summ() {  # summ NAME SYSTEM [--ft-set ...]
  local name=$1 sys=$2; shift 2
  mkdir -p $G/$name && cp -r runs/bench_sum/vocab runs/bench_sum/test $G/$name/
  timeout $((END + 30)) $PY benchmarks/summarization.py --out $G/$name --budget $B --pretrain $P --n-test $N \
    --systems $sys "$@" > $G/$name.log 2>&1 &
}
if [ "$PLAN" = 1 ]; then
  for s in scratch mass xlm; do mt mt_$s $s; done
  for s in unilm mass; do summ sum_$s $s; done
  BATCH=${BATCH:-16384}
elif [ "$PLAN" = 4 ]; then
  for s in scratch mass xlm; do mt mt_${s}_bleu $s --ft-set seq2seq.valid_generate=200 --ft-set trainer.valid_every=200 \
    --ft-set trainer.best_metric=bleu/avg --ft-set trainer.best_mode=max; done
  summ sum_unilm_causal_p1 unilm --ft-set seq2seq.corruption=causal --pretrain 1
  BATCH=${BATCH:-32768}
elif [ "$PLAN" = 3 ]; then
  BATCH=${BATCH:-65536}  # the embedder alone on the GPU, 4x stop 9's batch
else
  for s in scratch mass xlm; do mt mt_${s}_best $s --ft-set trainer.valid_every=200 --ft-set trainer.best_metric=ce/avg; done
  summ sum_unilm_causal unilm --ft-set seq2seq.corruption=causal
  summ sum_unilm_causal_p2 unilm --ft-set seq2seq.corruption=causal --pretrain 2
  BATCH=${BATCH:-32768}
fi

# --- issue 4: the embedder. A short smoke run first (fails fast, and measures updates/s under
# the same sharing), then the real run with its linear schedule laid out over the minutes left.
LASER="--config configs/laser_bible.yaml --set data.max_tokens=$BATCH --set trainer.warmup_steps=300 --set trainer.progress=false"
rm -rf /tmp/laser_smoke
if ! $X train $LASER --out /tmp/laser_smoke --set trainer.max_steps=80 --set trainer.log_every=20 \
    --set trainer.valid_every=80 --set trainer.save_every=80 > $G/laser_smoke.log 2>&1; then
  echo "laser smoke FAILED at $(since) s: stopping everything"; tail -40 $G/laser_smoke.log
  kill $(jobs -p) 2>/dev/null; sleep 2
  for f in $G/*.log; do echo "== $f"; tail -20 "$f"; done
  tar -czf "$OUT/results.tar.gz" $G/*.log; exit 1
fi
RATE=$($PY -c '
import json
rows = [json.loads(l) for l in open("/tmp/laser_smoke/metrics.jsonl") if "\"loss\"" in l]
a, b = rows[0], rows[-1]
print((b["step"] - a["step"]) / (b["elapsed_s"] - a["elapsed_s"]))')
MIN=$($PY -c "print(max(round(($END - $(since)) / 60, 2), 0.5))")
MAX=$($PY -c "print(max(int($RATE * $MIN * 60 * 0.9), 400))")
echo "laser: $RATE updates/s in the smoke run; $MAX updates, $MIN minutes, from $(since) s" | tee $G/laser_plan.txt
$X train $LASER --out $G/laser --set trainer.max_steps=$MAX --set trainer.max_minutes=$MIN \
  --set trainer.valid_every=1000 --set trainer.save_every=1000 --set trainer.keep_checkpoints=1 > $G/laser.log 2>&1 \
  || { echo "laser FAILED"; tail -40 $G/laser.log; }
echo "laser done at $(since) s"
kill $SMI 2>/dev/null
wait
echo "all done at $(since) s"
for f in $G/*.log; do echo "== $f"; tail -12 "$f"; done

# --- pack: the embedder (split: the return limit is 16 MiB a file), and the rest without models
tar -cf /tmp/laser.tar $G/laser/model $G/laser/summary.json $G/laser/metrics.jsonl $G/laser/curves.png \
  $G/laser.log $G/laser_plan.txt $G/laser_smoke.log 2>/dev/null
split -b 15M -d /tmp/laser.tar "$OUT/laser.tar."
tar -czf "$OUT/results.tar.gz" --exclude='*/model' --exclude='*/best' --exclude='*/checkpoints' --exclude='*/vocab' \
  --exclude="$G/laser" --exclude='*.desc' $G 2>/dev/null
ls -la "$OUT"
