#!/usr/bin/env bash
# Run HERE (a machine with pip and the internet), from anywhere, before the GPU check: gathers
# in .gpu/ (git-ignored; copy it along with the tree) what a bare GPU machine lacks: the
# serving stack as wheels for its Python 3.12 (pinned as in constraints.txt) and Tiny
# Shakespeare from $WEFT_DATA. About 4 MB. Then, on the GPU machine: bash benchmarks/gpu_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
data=${WEFT_DATA:?set WEFT_DATA to the folder that holds tinyshakespeare/input.txt}
rm -rf .gpu
mkdir -p .gpu/wheels .gpu/data/tinyshakespeare
cp "$data/tinyshakespeare/input.txt" .gpu/data/tinyshakespeare/
# A bare GPU image with PyTorch typically has anyio, click, h11 and httpx, not these: FastAPI and what it needs beyond them (prometheus_client is there too, but pinned here).
names='fastapi|starlette|pydantic|pydantic_core|annotated-types|annotated-doc'
names+='|typing-inspection|typing_extensions|uvicorn|opentelemetry-api|prometheus_client'
mapfile -t pins < <(grep -iE "^($names)==" constraints.txt)
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/wheels "${pins[@]}"
ls .gpu/wheels
du -sh .gpu
