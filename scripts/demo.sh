#!/usr/bin/env bash
# Install nasflow into .venv and run the demo search (CNNs on sklearn's digits, ~1 minute).
EXTRAS="" source "$(dirname "$0")/_setup.sh"
exec .venv/bin/nasflow demo "$@"
