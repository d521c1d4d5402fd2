#!/usr/bin/env bash
# Install nasflow into .venv and run the demo search (CNNs on sklearn's digits: about a
# minute on two cores, plus the install the first time).
EXTRAS="" source "$(dirname "$0")/_setup.sh"
exec .venv/bin/nasflow demo "$@"
