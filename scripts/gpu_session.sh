#!/usr/bin/env bash
# One GPU session of the benchmarks that 2 CPU cores cannot afford, all sharing one GPU at once:
#   - the LASER-style embedder (configs/laser_bible.yaml, bigger batches) for ~7 minutes (issue 4);
#   - benchmarks/mt_pretraining.py, low-resource en->de (2,000 pairs), scratch / MASS / XLM in
#     parallel, 6 minutes each (issue 3);
#   - benchmarks/summarization.py, UNILM and MASS in parallel, 6 minutes each (issue 3).
# Inputs (git-ignored, packed beforehand into .gpu/): data/bible10 + runs/vocab_bible10,
# data/bible + runs/bench_mt/vocab, data/debian (en) + runs/bench_sum/{vocab,test}, and the
# rouge-score / nltk / defusedxml wheels. Results land in runs/gpu/ and, packed, in $OUT.
#
#   bash scripts/gpu_session.sh            # on the GPU machine, from the repository root
#   B=0.3 P=0.15 END=100 N=20 bash scripts/gpu_session.sh   # a plumbing check on a CPU
set -u
T0=$(date +%s)
B=${B:-6} P=${P:-3.5} END=${END:-480} N=${N:-1000}  # minutes per system, of which pretraining; laser's end (s); test size
OUT=${OUT:-/tmp/gpu_out}
G=runs/gpu
mkdir -p "$OUT" "$G"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
PY=python3
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
for s in scratch mass xlm; do
  timeout $((END + 30)) $PY benchmarks/mt_pretraining.py --out $G/mt_$s --vocab runs/bench_mt/vocab --pairs en-de \
    --max-examples 2000 --budget $B --pretrain $P --n-test $N --systems $s > $G/mt_$s.log 2>&1 &
done
for s in unilm mass; do
  mkdir -p $G/sum_$s && cp -r runs/bench_sum/vocab runs/bench_sum/test $G/sum_$s/
  timeout $((END + 30)) $PY benchmarks/summarization.py --out $G/sum_$s --budget $B --pretrain $P --n-test $N \
    --systems $s > $G/sum_$s.log 2>&1 &
done

# --- issue 4: the embedder. A short smoke run first (fails fast, and measures updates/s under
# the same sharing), then the real run with its linear schedule laid out over the minutes left.
LASER="--config configs/laser_bible.yaml --set data.max_tokens=16384 --set trainer.warmup_steps=300 --set trainer.progress=false"
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
tar -czf "$OUT/results.tar.gz" --exclude='*/model' --exclude='*/checkpoints' --exclude='*/vocab' \
  --exclude="$G/laser" --exclude='*.desc' $G 2>/dev/null
ls -la "$OUT"
