# Sourced ON the GPU machine by gpu_run.sh and gpu_base.sh, from the repository root: installs
# the wheels that benchmarks/gpu_prepare.sh carried in .gpu/wheels outside the tree (nothing is
# fetched), puts src/ on the path and points WEFT_DATA at the carried data.
site=/tmp/weft-gpu-site
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" .gpu/wheels/*.whl || exit 1
fi
export PYTHONPATH="$PWD/src:$PWD:$site${PYTHONPATH:+:$PYTHONPATH}"
export WEFT_DATA=${WEFT_DATA:-$PWD/.gpu/data}
export PYTHONUNBUFFERED=1
