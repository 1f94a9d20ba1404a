#!/usr/bin/env bash
# The whole GPU check in one command, for a lent H100/H200 (no network there): install the wheels
# carried in .whl/, refuse at once if a prerequisite is missing, print the device and versions,
# run every `gpu` test with GPUMLP_REQUIRE_GPU=1 (a skip is a failure), both parity runs, and the
# benchmarks. Everything lands in OUTDIR (default $OUT, else ./gpu-check) as text and JSON, and
# each step writes as it goes, so a step cut short keeps what it finished; summary.txt collects
# the short form, and a table of each step's budget, time used and result is printed last.
#
#   scripts/gpu_check.sh [OUTDIR]       # the check
#   scripts/gpu_check.sh --print-budget # the step budgets only; runs nothing
#
# Time: every step runs under its own budget (BUDGETS below, printed first) and never past the
# total, TOTAL_BUDGET s from the start, so the whole check ends within 8 minutes, well inside a
# 10-minute device call. A step added later takes its seconds from the others: the script
# refuses to start when the budgets (plus KILL_AFTER s of grace each) exceed the total.
#
# Refusals: without the carried wheels, without a usable CUDA device, or with a CuPy that cannot
# compile and run a kernel, it prints one line on stderr and exits 2 before any step runs (and
# before OUTDIR is made). GPUMLP_WHEELS names another folder of wheels (default .whl, relative
# to the repository).
#
# Before the call, on a machine with pip and the package registry (docs/benchmarks.md):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux2014_x86_64 -d .whl \
#     array-api-compat==1.16.0 array-api-strict==2.6.1 mpi4py==4.1.2 mpich==5.0.2
set -uo pipefail

# -- Budgets: the one place they are declared (seconds) --------------------------------------
TOTAL_BUDGET=480
KILL_AFTER=2 # a step still alive this long after its budget's SIGTERM gets SIGKILL
BUDGETS=(
    install 30        # the carried wheels into a private folder
    preflight 30      # CuPy imports, sees a device, NVRTC compiles and runs a kernel
    device 20         # versions, device properties, nvidia-smi
    gpu-tests 150     # pytest -m 'gpu and not mpi'
    parity-float64 30 # gpumlp parity numpy vs cupy
    parity-float32 30
    mpi 30            # 2 ranks on the GPU (host staging) against 1 process; NCCL with 2 GPUs
    bench 100         # cupy engines and eager torch-cuda, every case
    bench-compile 40  # torch.compile(mode="reduce-overhead"): compiling is slow, so last
)
WHEELS_NEEDED=(array_api_compat array_api_strict) # and mpi4py, mpich for the mpi step

declare -A budget=()
steps=()
for ((i = 0; i < ${#BUDGETS[@]}; i += 2)); do
    steps+=("${BUDGETS[i]}")
    budget[${BUDGETS[i]}]=${BUDGETS[i + 1]}
done
steps_sum=0
for name in "${steps[@]}"; do steps_sum=$((steps_sum + budget[$name])); done
reserved=$((steps_sum + KILL_AFTER * ${#steps[@]}))

refuse() { echo "gpu_check.sh: refused: $*" >&2; exit 2; }

print_budget() {
    printf '%-16s %9s\n' step "budget s"
    for name in "${steps[@]}"; do printf '%-16s %9d\n' "$name" "${budget[$name]}"; done
    printf '%-16s %9d\n' "sum of steps" "$steps_sum"
    printf '%-16s %9d\n' "kill grace" "$((KILL_AFTER * ${#steps[@]}))"
    printf '%-16s %9d\n' total "$TOTAL_BUDGET"
}

print_budget
((reserved <= TOTAL_BUDGET)) \
    || refuse "the step budgets and kill grace add up to $reserved s, over the total $TOTAL_BUDGET s"
[[ ${1:-} == --print-budget ]] && exit 0

cd "$(dirname "$0")/.." || refuse "cannot enter the repository"
out=${1:-${OUT:-gpu-check}}
wheels=${GPUMLP_WHEELS:-.whl}
deadline=$((SECONDS + TOTAL_BUDGET))
status=0
used=()

# seconds_for NAME: NAME's budget, cut to what is left of the total (0 when nothing is).
seconds_for() {
    local secs=${budget[$1]:?"step $1 has no budget in BUDGETS"}
    local left=$((deadline - SECONDS - KILL_AFTER))
    ((left < secs)) && secs=$left
    echo $((secs > 0 ? secs : 0))
}

# -- Preflight: refuse before any step runs, with one line -----------------------------------
missing=()
for w in "${WHEELS_NEEDED[@]}"; do compgen -G "$wheels/$w-*.whl" > /dev/null || missing+=("$w"); done
((${#missing[@]} == 0)) || refuse "no wheel of ${missing[*]} in $wheels/ (carry them:" \
    "scripts/gpu_check.sh's header says how to download them)"

start=$SECONDS
site=$(mktemp -d -t gpumlp-site.XXXXXX) || refuse "cannot make a temporary folder"
trap 'rm -rf "$site"' EXIT
secs=$(seconds_for install)
# MPI's wheels go into a prefix of their own (mpich's libmpi and mpiexec land in its lib/ and
# bin/, which --target would drop); the others into the folder put on PYTHONPATH.
plain=() mpi=()
for w in "$wheels"/*.whl; do
    case ${w##*/} in mpi4py-* | mpich-*) mpi+=("$w") ;; *) plain+=("$w") ;; esac
done
pip_log=$( {
    timeout -k "$KILL_AFTER" "$secs" python3 -m pip install -q --no-index --no-deps \
        --no-compile --no-cache-dir --disable-pip-version-check --target "$site" "${plain[@]}" \
    && { ((${#mpi[@]} == 0)) || timeout -k "$KILL_AFTER" "$secs" python3 -m pip install -q \
        --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
        --ignore-installed --prefix "$site/mpi" "${mpi[@]}"; }
} 2>&1)
case $? in
    0) ;;
    124 | 137) refuse "installing the wheels in $wheels/ took over its budget of $secs s" ;;
    *) refuse "installing the wheels in $wheels/ failed: $(tail -n 1 <<< "$pip_log")" ;;
esac
used+=("install $((SECONDS - start)) 0")
mpi_site=$(compgen -G "$site/mpi/lib/python3*/site-packages" | head -n 1)
export PYTHONPATH="$PWD/src:$site:$mpi_site${PYTHONPATH:+:$PYTHONPATH}"
export LD_LIBRARY_PATH="$site/mpi/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" # mpi4py's libmpi
export PYTHONUNBUFFERED=1

read -r -d '' PREFLIGHT_PY <<'EOF'
import sys


def refuse(what, exc=None):
    why = f": {type(exc).__name__}: {' '.join(str(exc).split())[:300]}" if exc else ""
    sys.exit(f"gpu_check.sh: refused: {what}{why}")


try:
    from gpumlp import backend
except Exception as exc:
    refuse("gpumlp does not import", exc)
usable, reason = backend.cupy_status()  # imports CuPy, finds a device, runs a reduction on it
if not usable:
    refuse(reason)
cupy = backend.cupy_module()
SOURCE = r"""extern "C" __global__ void add_one(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += 1.0f;
}"""
try:
    add_one = backend.compile_cuda(SOURCE, ["add_one"])["add_one"]  # NVRTC, as the engines do
    x = cupy.arange(300, dtype=cupy.float32)
    add_one((2,), (256,), (x, cupy.int32(300)))
    right = bool((x == cupy.arange(1, 301, dtype=cupy.float32)).all())
except Exception as exc:
    refuse("CuPy cannot compile and run a CUDA kernel", exc)
if not right:
    refuse("a compiled CUDA kernel ran but wrote wrong values")
print(f"preflight: {reason}; CuPy {cupy.__version__} compiled and ran a kernel")
EOF
start=$SECONDS
secs=$(seconds_for preflight)
preflight=$(timeout -k "$KILL_AFTER" "$secs" python3 -c "$PREFLIGHT_PY" 2>&1)
case $? in
    0) ;;
    124 | 137) refuse "the preflight (CuPy, a device, a kernel compiled) took over its $secs s" ;;
    *) refuse "$(grep -m 1 '^gpu_check.sh: refused: ' <<< "$preflight" \
        | sed 's/^gpu_check.sh: refused: //' || tail -n 1 <<< "$preflight")" ;;
esac
used+=("preflight $((SECONDS - start)) 0")

# -- The steps --------------------------------------------------------------------------------
mkdir -p "$out" || refuse "cannot make $out"
summary=$out/summary.txt
say() { tee -a "$summary"; }
print_budget > "$summary"
echo "$preflight" | say

# step NAME LOG [--live] CMD...: a header, then CMD under NAME's budget (cut to what is left of
# the total), its output in LOG, and on the screen as it comes with --live; records the seconds
# used and the result. A step cut short says so, in LOG and here.
step() {
    local name=$1 log=$2 live=0 start=$SECONDS secs rc
    shift 2
    [[ $1 == --live ]] && { live=1; shift; }
    secs=$(seconds_for "$name") || { status=1; return 0; }
    printf '\n== %s (budget %d s) ==\n' "$name" "$secs" | say
    if ((secs < 1)); then
        echo "$name: not run, the total budget of $TOTAL_BUDGET s is spent" | tee "$log" | say
        used+=("$name 0 skip")
        status=1
        return 0
    fi
    if ((live)); then
        timeout -k "$KILL_AFTER" "$secs" "$@" 2>&1 | tee "$log"
    else
        timeout -k "$KILL_AFTER" "$secs" "$@" > "$log" 2>&1
    fi
    rc=$?
    ((rc == 0)) || status=1
    used+=("$name $((SECONDS - start)) $rc")
    if ((rc == 124 || rc == 137)); then
        [[ -n $(tail -c 1 "$log") ]] && echo >> "$log" # the note on a line of its own
        echo "$name: cut short at its budget of $secs s" >> "$log"
        echo "$name: cut short at its budget of $secs s; what it finished is in $log" | say
    fi
    return 0
}

# output LOG: a step's output without the notes step() wrote there (it says them itself).
output() { grep -v -e ": cut short at its budget of" -e ": not run, the total budget" "$1"; }

read -r -d '' DEVICE_PY <<'EOF'
import json, platform, subprocess, sys
import numpy
from gpumlp import backend
info = {"python": platform.python_version(), "numpy": numpy.__version__}
info |= backend.cuda_info()
props = backend.cupy_module().cuda.runtime.getDeviceProperties(0)
info |= {"sm_count": props["multiProcessorCount"], "cc": f"{props['major']}.{props['minor']}",
         "memory_gib": round(props["totalGlobalMem"] / 2**30, 1)}
try:
    import torch
    info["torch"] = torch.__version__
except ImportError:
    info["torch"] = None
query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
try:
    smi = subprocess.run(query, capture_output=True, text=True, timeout=10)
    info["nvidia_smi"] = (smi.stdout or smi.stderr).strip()
except (OSError, subprocess.SubprocessError) as exc:
    info["nvidia_smi"] = f"{type(exc).__name__}: {exc}"
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=1)
print(json.dumps(info, indent=1))
EOF
step device "$out/device.txt" python3 -c "$DEVICE_PY" "$out/versions.json"
output "$out/device.txt" | say

# Every gpu test, a skip a failure; no -x, so one run reports every failure. -vv writes a line
# per test as it ends (a run cut short shows where) and keeps the -ra summary lines whole.
step gpu-tests "$out/gpu-tests.txt" env GPUMLP_REQUIRE_GPU=1 python3 -m pytest \
    -m "gpu and not mpi" -vv -ra -p no:cacheprovider --durations=10 --junitxml "$out/gpu-tests.xml"
if grep -q "short test summary info" "$out/gpu-tests.txt"; then
    sed -n '/short test summary info/,$p' "$out/gpu-tests.txt" | say
else # cut short: the failures so far, and the test that was running
    {
        echo "before the cut: $(grep -c ' PASSED' "$out/gpu-tests.txt") passed," \
            "$(grep -Ec ' (FAILED|ERROR)' "$out/gpu-tests.txt") failed or errors"
        grep -E ' (FAILED|ERROR)' "$out/gpu-tests.txt"
        output "$out/gpu-tests.txt" | grep -v '^$' | tail -n 1
    } | say
fi

# The MPI path: two ranks on the one GPU, their gradients summed through host memory, against
# one process (a skip a failure: so too without the carried mpi4py and mpich wheels); then NCCL,
# which needs a GPU per rank (it skips on one GPU).
step mpi "$out/mpi.txt" bash -c 'env GPUMLP_REQUIRE_GPU=1 python3 -m pytest -m "mpi and gpu" \
    -k host-staging -vv -ra -p no:cacheprovider && python3 -m pytest -m "mpi and gpu" -k nccl \
    -vv -ra -p no:cacheprovider'
output "$out/mpi.txt" | grep -E "(passed|failed|skipped|SKIPPED|FAILED)" | say

for dtype in float64 float32; do
    step "parity-$dtype" "$out/parity-$dtype.txt" python3 -m gpumlp parity \
        --backends numpy cupy --dtype "$dtype" --steps 50 --epochs 1 --json "$out/parity-$dtype.json"
    output "$out/parity-$dtype.txt" | tail -n 2 | say
done

# Benchmarks, on the same data: bench.py prints each row and rewrites its JSON as it goes. The
# workplace's OpenBLAS settings slow NumPy; they are unset for these commands only.
step bench "$out/bench_gpu.txt" --live env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    python3 scripts/bench.py --backends cupy torch-cuda --engines generic fused graph persistent auto \
    --repeats 3 --budget 10 --json "$out/bench_gpu.json"
output "$out/bench_gpu.txt" >> "$summary"
step bench-compile "$out/bench_compile.txt" --live env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
    python3 scripts/bench.py --backends torch-compile --repeats 3 --budget 5 \
    --json "$out/bench_compile.json"
output "$out/bench_compile.txt" >> "$summary"

{
    printf '\n%-16s %9s %7s  %s\n' step "budget s" "used s" result
    for row in "${used[@]}"; do
        read -r name secs rc <<< "$row"
        case $rc in
            0) result=ok ;;
            124 | 137) result="cut short" ;;
            skip) result="not run" ;;
            *) result="failed ($rc)" ;;
        esac
        printf '%-16s %9d %7d  %s\n' "$name" "${budget[$name]}" "$secs" "$result"
    done
    printf '%-16s %9d %7d  status %d\n' total "$TOTAL_BUDGET" "$SECONDS" "$status"
} | say
exit $status
