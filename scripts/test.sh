#!/usr/bin/env bash
# Install nasflow with its test dependencies into .venv and run the whole test suite, ruff
# and mypy --strict (tests/ray in a loopback-only network namespace: unshare -rn).
# Every check runs even when an earlier one fails; the exit status is non-zero if any did.
EXTRAS="test,ray" source "$(dirname "$0")/_setup.sh"
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
if [ $# -gt 0 ]; then
  .venv/bin/python -m pytest -q "$@" || failed+=("pytest")
else
  .venv/bin/python -m pytest -q --ignore=tests/ray || failed+=("pytest")
  # Ray gives its nodes the machine's outward address: its tests run in a network
  # namespace holding only loopback (a user namespace too, so root is not needed), and
  # must run, not skip (NASFLOW_REQUIRE_RAY)
  NASFLOW_REQUIRE_RAY=1 unshare -rn bash -c \
    'ip link set lo up && exec .venv/bin/python -m pytest -q tests/ray' \
    || failed+=("pytest tests/ray (under unshare -rn)")
fi
.venv/bin/ruff check src tests benchmarks examples || failed+=("ruff")
.venv/bin/python -m mypy src || failed+=("mypy")
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED checks: ${failed[*]}"
  exit 1
fi
echo "all checks passed: pytest, ruff, mypy"
