#!/usr/bin/env bash
# Issue 23's GPU scale check: each arm's ordinary cell at its tuned learning rate, 12k Digitclutter
# images x 20 epochs x 5 seeds (preset digitclutter_arms_scale_check), then the accuracy per arm and
# the constrained-minus-unconstrained differences with their 95% CIs. For a lent GPU machine that has
# torch but no install of this package:   PYTHONPATH=. bash benchmarks/gpu_scale_check.sh
# Results go to ${OUT:-results}/digitclutter_arms_scale_check (resumable: rerun to finish).
set -euo pipefail
RESULTS="${OUT:-results}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
start=$(date +%s)
python -m itercourse sweep --preset digitclutter_arms_scale_check --device cuda --workers 1 \
    --results-dir "$RESULTS" --data-root "${DATA_ROOT:-data}"
echo "wall: $(( $(date +%s) - start )) s"
python - "$RESULTS" <<'PY'
import sys
from itercourse.experiments import load_results
from itercourse.verdicts import accuracy_decomposition, arm_verdicts, decomposition_table, rules_table
from itercourse.report import mean_spread
from itercourse.verdicts import arm_of
results = load_results("digitclutter_arms_scale_check", sys.argv[1])
for arm in sorted({arm_of(r) for r in results}):
    print(arm, "test accuracy", mean_spread([r.final_test_acc for r in results if arm_of(r) == arm]))
print(decomposition_table(accuracy_decomposition(results)))
print(rules_table([r for r in arm_verdicts(results) if r.get("metric") == "final_test_acc"]))
PY
