#!/bin/bash
# Alternate trees for an A/B of ab.py in the same window:
#   scripts/perf/alt.sh ROUNDS SECONDS TREE_A TREE_B ...
# (each TREE has its own .venv with ra_actors installed from it, editable)
HERE=$(dirname "$(readlink -f "$0")")
R=$1; D=$2; shift 2
for i in $(seq 1 "$R"); do
  for t in "$@"; do
    r=$(cd "$t" && timeout 300 "$t/.venv/bin/python" "$HERE/ab.py" "$D" 2 2>/dev/null | tail -2 | tr '\n' ' ')
    echo "$i $(basename "$t") $r"
  done
done
