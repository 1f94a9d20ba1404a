#!/usr/bin/env bash
# The whole GPU check in one command, for a lent H100/H200 (no network there): install from the
# working tree with the wheels carried in .whl/, print the device and versions, run every `gpu`
# test with GPUMLP_REQUIRE_GPU=1 (a skip is a failure), both parity runs, and the benchmarks.
# Everything lands in OUTDIR (default $OUT, else ./gpu-check) as text and JSON; a short table
# is printed last. Meant to finish well inside 10 minutes.
#
#   scripts/gpu_check.sh [OUTDIR]
#
# Before the call, on a machine with pip and the package registry (docs/benchmarks.md):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl \
#     array-api-compat==1.16.0 array-api-strict==2.6.1
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-gpu-check}}
mkdir -p "$out"
status=0

step() { echo; echo "== $* ==" | tee -a "$out/summary.txt"; }

# 1. Install: the carried wheels into a private folder, the package itself from src/ (no build,
#    so no build-isolation download).
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/gpumlp-site .whl/*.whl || status=1
    export PYTHONPATH="/tmp/gpumlp-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}"
export PYTHONUNBUFFERED=1

# 2. The device and the versions.
step "device"
python3 - "$out/versions.json" <<'EOF' 2>&1 | tee -a "$out/summary.txt" || status=1
import json, platform, sys
import numpy
info = {"python": platform.python_version(), "numpy": numpy.__version__}
try:
    from gpumlp import backend
    usable, reason = backend.cupy_status()
    info |= {"cupy_usable": usable, "cupy_reason": reason}
    if usable:
        info |= backend.cuda_info()
        props = backend.cupy_module().cuda.runtime.getDeviceProperties(0)
        info |= {"sm_count": props["multiProcessorCount"], "cc": f"{props['major']}.{props['minor']}",
                 "memory_gib": round(props["totalGlobalMem"] / 2**30, 1)}
except Exception as exc:  # report, do not hide
    info["error"] = f"{type(exc).__name__}: {exc}"
try:
    import torch
    info["torch"] = torch.__version__
except ImportError:
    info["torch"] = None
json.dump(info, open(sys.argv[1], "w"), indent=1)
print(json.dumps(info, indent=1))
EOF
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 \
    | tee -a "$out/summary.txt"

# 3. Every gpu test; a skip fails the run.
step "pytest -m gpu (GPUMLP_REQUIRE_GPU=1)"
GPUMLP_REQUIRE_GPU=1 timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider -x \
    --junitxml "$out/gpu-tests.xml" > "$out/gpu-tests.txt" 2>&1 || status=1
tail -n 5 "$out/gpu-tests.txt" | tee -a "$out/summary.txt"

# 4. Parity, NumPy against CuPy, per step.
for dtype in float64 float32; do
    step "parity numpy vs cupy, $dtype"
    timeout 120 python3 -m gpumlp parity --backends numpy cupy --dtype "$dtype" --steps 50 \
        --epochs 1 --json "$out/parity-$dtype.json" > "$out/parity-$dtype.txt" 2>&1 || status=1
    tail -n 2 "$out/parity-$dtype.txt" | tee -a "$out/summary.txt"
done

# 5. Benchmarks: every engine beside PyTorch eager and torch.compile, on the same data. The
#    workplace's OpenBLAS settings slow NumPy; they are unset for this command only.
step "benchmarks"
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE timeout 240 python3 scripts/bench.py \
    --backends cupy torch-cuda torch-compile --engines generic fused graph auto --repeats 3 \
    --budget 20 --json "$out/bench_gpu.json" > "$out/bench_gpu.txt" 2>&1 || status=1
cat "$out/bench_gpu.txt" | tee -a "$out/summary.txt"

step "status $status"
exit $status
