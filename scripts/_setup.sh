# Shared by demo.sh and test.sh: a virtualenv in .venv with torch 2.13.0 (CPU) and nasflow.
# Sourced, not run. EXTRAS selects the optional dependencies ("" or "test").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
