#!/usr/bin/env bash
# Builds .whl/: the wheels the lent GPU machine's image lacks, for its Python 3.12 (it has no network).
# scripts/gpu_check.py installs them there with --no-index --no-deps, beside this checkout. .gitignore keeps
# .whl/ out of the repository; the device tool carries it when a run names it (carry: [".whl"]).
#
#   bash scripts/gpu_wheels.sh          # then, on the GPU machine: python3 scripts/gpu_check.py --out "$OUT"
#
# What the image lacks, from partialnet's core dependencies (its list: the device tool's KINDS.md):
# onnxsim. Everything else (torch, numpy, onnx, onnxruntime, onnxscript, typer, rich, pytest, matplotlib)
# is there. Pin the version this project is tested with here.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(onnxsim==0.8.1)
rm -rf .whl
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
