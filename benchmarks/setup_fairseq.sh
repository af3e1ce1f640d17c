#!/usr/bin/env bash
# A throwaway fairseq environment for benchmarks/fairseq_peer.py (issue 3), never an xling
# dependency. Recipe of /work/shared/REFERENCE.md section 3 (Python 3.11, torch 2.13.0 CPU):
# fairseq 0.12.2 does not import on 3.11, the fork fairseq-fixed 0.12.3.1 does when
#   - pip is kept on torch==2.13.0 (PIP_CONSTRAINT) so no CUDA build is pulled,
#   - its dependencies are installed first and fairseq itself with --no-deps
#     --no-build-isolation (its torchaudio requirement is a CUDA wheel, unneeded for text).
# Compiles its C++/Cython extensions: 3-4 minutes on 2 cores. Idempotent: exits at once when
# the environment already imports fairseq.
#
#   bash benchmarks/setup_fairseq.sh [VENV]      # default .cache/fairseq-venv (git-ignored)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.cache/fairseq-venv}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/fairseq-train" ] && "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
    echo "fairseq already installed in $VENV ($("$VENV/bin/python" -c 'import fairseq; print(fairseq.__version__)'))"
    exit 0
fi

mkdir -p "$VENV"
"$PY" -m venv "$VENV"
CONSTRAINT="$VENV/constraints.txt"
echo "torch==2.13.0" > "$CONSTRAINT"
export PIP_CONSTRAINT="$CONSTRAINT" PIP_DISABLE_PIP_VERSION_CHECK=1
PIP=("$VENV/bin/python" -m pip install -q)

"${PIP[@]}" --upgrade pip setuptools wheel
"${PIP[@]}" torch==2.13.0                     # the CPU wheel first: nothing may pull a CUDA build
"${PIP[@]}" numpy hydra-core==1.3.2 omegaconf==2.3.0 cffi cython bitarray regex tqdm scikit-learn \
    sacrebleu sentencepiece
"${PIP[@]}" --no-deps --no-build-isolation fairseq-fixed==0.12.3.1

"$VENV/bin/fairseq-train" --help > /dev/null
echo "fairseq $("$VENV/bin/python" -c 'import fairseq; print(fairseq.__version__)') installed in $VENV"
