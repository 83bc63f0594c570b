#!/usr/bin/env bash
# Run ON the GPU machine, from the repository root, after benchmarks/gpu_prepare.sh here (it
# carries the corpus in .gpu/data): trains builtin:english's shape on the GPU with
# tools/train_base_model.py --preset gpu, STAGE1 and STAGE2 minutes (default 4 and 2), and
# leaves in $OUT (or runs/) base-english.tar (the exported model: config, tokenizer, generation
# settings, weights, manifest, plus each stage's metrics) and base.log. Back here: untar it
# into runs/base-gpu, score it with benchmarks/finetune.py --arm 'gpu={"init_from":
# "runs/base-gpu"}' beside today's base, and ship it with tools/train_base_model.py
# --export-only runs/base-gpu (docs/base-model.md, "On a GPU").
# Arguments after the two budgets go to the tool (e.g. --set batch_size=512).
set -uo pipefail
out=${OUT:-runs}
stage1=${1:-4}
stage2=${2:-2}
shift $(($# < 2 ? $# : 2))
python=${PYTHON:-python3}
mkdir -p "$out"
source benchmarks/gpu_env.sh
data=$WEFT_DATA
runs=/tmp/weft-base
rm -rf "$runs" && mkdir -p "$runs"
# The log keeps weft's lines (settings, evaluations, why it stopped), not the progress bar.
"$python" tools/train_base_model.py "$data/gutenberg" \
    --web-text "$data/ud-english-ewt/en_ewt-ud-train.conllu" --preset gpu \
    --minutes "$stage1,$stage2" --out "$runs/base-english" --export-to "$runs/export" "$@" \
    2>&1 | tr '\r' '\n' | grep -v "step/s" >"$out/base.log"
status=${PIPESTATUS[0]}
for stage in base-english base-english-web; do
    cp "$runs/$stage/metrics.jsonl" "$runs/export/$stage-metrics.jsonl" 2>/dev/null
done
tar -cf "$out/base-english.tar" -C "$runs/export" .
tail -n 5 "$out/base.log"
exit "$status"
