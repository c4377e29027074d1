#!/usr/bin/env bash
# Installs lrfind into ./.venv on a fresh machine with no GPU and no hub access.
# torch goes first, pinned to the CPU build: a bare `torch` requirement would pull a multi-GB CUDA
# build. open-clip-torch is installed without its dependencies (they would replace torch); lrfind
# only reads the CLIP BPE vocabulary file it ships.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check torch==2.13.0
pip install -q --disable-pip-version-check -c <(echo torch==2.13.0) -e '.[test]'
pip install -q --disable-pip-version-check --no-deps open-clip-torch
echo "lrfind installed in $(pwd)/.venv"
