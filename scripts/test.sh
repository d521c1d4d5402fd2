#!/usr/bin/env bash
# Install nasflow with its test dependencies into .venv and run the whole test suite + ruff.
# Every check runs even when an earlier one fails; the exit status is non-zero if any did.
EXTRAS="test" source "$(dirname "$0")/_setup.sh"
# the dashboard's browser tests drive Debian's chromium; install it when missing (as root)
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
  else
    echo "chromium/chromium-driver missing and not root: the browser tests will fail" >&2
  fi
fi
set +e
failed=()
.venv/bin/python -m pytest -q "$@" || failed+=("pytest")
.venv/bin/ruff check src tests benchmarks examples || failed+=("ruff")
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED checks: ${failed[*]}"
  exit 1
fi
echo "all checks passed: pytest, ruff"
