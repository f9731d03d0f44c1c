#!/usr/bin/env bash
# Create .venv (or $VENV) and install contralord with its test tools. Idempotent.
# torch/torchvision are installed first with exact versions: on our machines they come from local
# disk; elsewhere from PyPI. Override with TORCH_SPEC="torch==X torchvision==Y" for another build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
"$VENV/bin/python" -m pip install -q -e ".[dev]"
