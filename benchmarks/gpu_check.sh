#!/usr/bin/env bash
cd "$(dirname "$0")/.." || exit 1  # the working tree's root; what it checks: gpu_check.py
PYTHONPATH=. python benchmarks/gpu_check.py "$@"
