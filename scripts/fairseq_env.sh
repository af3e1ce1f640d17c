#!/bin/sh
# Prints the python of the fairseq side venv that `make fairseq-venv` builds (issue 15):
# $FAIRSEQ_VENV, or $XLING_CACHE/fairseq-venv, or ~/.cache/xling/fairseq-venv, the same
# defaults as the Makefile. With --check, exits 1 (saying why) when that venv is not built.
#   "$(scripts/fairseq_env.sh)" tests/fairseq_ref/make_tiny.py --corpus C --out O
venv="${FAIRSEQ_VENV:-${XLING_CACHE:-$HOME/.cache/xling}/fairseq-venv}"
if [ "${1:-}" = "--check" ] && ! ls "$venv"/.built-* >/dev/null 2>&1; then
    echo "fairseq side venv not built at $venv: run 'make fairseq-venv'" >&2
    exit 1
fi
echo "$venv/bin/python"
