#!/usr/bin/env bash
# Run HERE (a machine with pip and the internet), from anywhere, before the GPU check: gathers
# in .gpu/ (git-ignored; copy it along with the tree) what a bare GPU machine lacks: the
# serving stack as wheels for its Python 3.12 (pinned as in constraints.txt), Tiny Shakespeare,
# and the base model's corpus (the Gutenberg books, and the EWT training sentences without
# their token lines) from $WEFT_DATA. About 23 MB. Then, on the GPU machine:
# bash benchmarks/gpu_run.sh, and bash benchmarks/gpu_base.sh to train the base model there.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
data=${WEFT_DATA:?set WEFT_DATA to the folder that holds tinyshakespeare/input.txt}
rm -rf .gpu
mkdir -p .gpu/wheels .gpu/data/tinyshakespeare
cp "$data/tinyshakespeare/input.txt" .gpu/data/tinyshakespeare/
mkdir -p .gpu/data/gutenberg .gpu/data/ud-english-ewt
cp "$data"/gutenberg/*.txt "$data/gutenberg/SOURCES.md" .gpu/data/gutenberg/
# tools/train_base_model.py reads only these comment lines of the CoNLL-U file (14 MB -> 1.5 MB).
grep -E '^# (newdoc|newpar|text = )' "$data/ud-english-ewt/en_ewt-ud-train.conllu" \
    >.gpu/data/ud-english-ewt/en_ewt-ud-train.conllu
# A bare GPU image with PyTorch typically has anyio, click, h11 and httpx, not these: FastAPI and what it needs beyond them (prometheus_client is there too, but pinned here),
# and pydivsufsort, which every training run needs for its copy index (numpy and wheel, its
# requirements, are there).
names='fastapi|starlette|pydantic|pydantic_core|annotated-types|annotated-doc'
names+='|typing-inspection|typing_extensions|uvicorn|opentelemetry-api|prometheus_client'
names+='|pydivsufsort'
mapfile -t pins < <(grep -iE "^($names)==" constraints.txt)
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/wheels "${pins[@]}"
ls .gpu/wheels
du -sh .gpu
