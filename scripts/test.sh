#!/usr/bin/env bash
# Install nasflow with its test dependencies into .venv and run the whole test suite + ruff.
EXTRAS="test" source "$(dirname "$0")/_setup.sh"
.venv/bin/python -m pytest -q "$@"
.venv/bin/ruff check src tests benchmarks examples
