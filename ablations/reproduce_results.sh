#!/usr/bin/env bash
# Regenerates RESULTS.md's tables on this machine: the three table sweeps at the cpu preset with
# SEEDS seeds (default 3) into ./mlflow.db, then Tables 4, 5 and 6 (each from the newest sweep of its
# experiment) into results/.
#   bash ablations/reproduce_results.sh            # ~1.5-2 h on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-3}
STAMP=$(date +%Y%m%d-%H%M%S)  # a new sweep name per call: reruns never collide with earlier sweeps
for kind in negatives losses batch_size; do
  "$PY" tune/sweep_$kind.py --preset cpu --seeds "$SEEDS" --name "results-$kind-$STAMP"
done
for table in table4 table5 table6; do
  "$PY" ablations/make_tables.py --tracking-uri "sqlite:///$PWD/mlflow.db" --spec $table --sweep-run latest \
    --paper --format markdown --format csv --out results/ --overwrite  # regenerates: replace the tables
done
