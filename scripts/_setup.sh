# Shared by demo.sh and test.sh: a virtualenv in .venv with torch 2.13.0 and nasflow (see
# below for which torch build you get, and how to choose the CPU or the CUDA one).
# Sourced, not run. EXTRAS selects the optional dependencies ("" or "test").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# torch first, pinned, so that installing nasflow never pulls another torch. Here it
# takes the local CPU wheel (pip's configured find-links). On an ordinary machine a plain
# `torch==2.13.0` from PyPI is the multi-GB CUDA build on Linux; for the CPU build, install
# it first from PyTorch's CPU wheel index:
#   .venv/bin/python -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
# and on a GPU machine the default PyPI wheel (CUDA) is the one you want:
#   .venv/bin/python -m pip install torch==2.13.0
# then run this script: torch is already there, and this line changes nothing.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
