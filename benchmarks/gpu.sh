#!/usr/bin/env bash
# Every GPU check and benchmark, in the order the parts are named. The device tool lends 15
# minutes in all (machine start included) and at most 10 minutes a call, so measure the
# step-time targets first, in one call, then check:
#
#   bash benchmarks/gpu.sh OUT deepxde deepxde200k triton   # the two targets beside DeepXDE, the kernels'
#                                                           # settings (limits 200 + 200 + 130 s: timeout_s 600)
#   LIMIT_tests=S bash benchmarks/gpu.sh OUT tests          # the GPU tests, S = the time left less 20 s
#   bash benchmarks/gpu.sh [OUTPUT_DIR] [PART ...]          # default: outputs/gpu, every part
#
# A part's limit can be changed with LIMIT_<part>=SECONDS (LIMIT_deepxde=150 ...). Within a part
# the variants that decide a target come first, and each row is printed as it finishes, so a
# part stopped by its limit keeps what it measured. Every pinn variant of a vs_deepxde table
# trains the same network from the same points: its rel L2 column agreeing with the unfused
# variants' is also a check of the Triton kernels on the GPU.
#
# Packages the GPU machine lacks (Hydra, DeepXDE) travel as wheels: run
# `bash benchmarks/gpu_wheels.sh` here first, carry .whl, and this script installs them.
#
# Each part writes OUTPUT_DIR/PART.txt and prints its last lines; a part that fails or runs
# past its time limit does not stop the others, and the script's exit status is 1 if any
# failed. Parts:
#   tests        the CUDA-graph, pre-flight and fused-kernel (derivatives.triton) tests
#   deepxde      benchmarks/vs_deepxde.py, 2,000 + 400 points, 1,000 iterations
#   deepxde200k  the same at 200,000 + 40,000 points, 200 iterations
#   triton       benchmarks/triton_blocks.py: block sizes and warps of the fused layer, 2,000 and 200,000 points
#   tf32         benchmarks/tf32.py: the loss and gradient error of TF32 matrix products
#   engines      benchmarks/derivatives.py: every engine, eager and graphed, d = 2 ... 100
#   stochastic   the stochastic engine and the forward one (with and without Gram matrices) at d = 10, 100, 1000
#   suite        the whole default test suite on this machine (8 workers where pytest-xdist is installed)
set -u
cd "$(dirname "$0")/.."
all="tests deepxde deepxde200k triton tf32 engines stochastic suite"
out=${1:-outputs/gpu}
if [[ " $all " == *" $out "* ]]; then
    echo "the first argument is the output folder, not a part ('$out'): bash benchmarks/gpu.sh OUT PART ..." >&2
    exit 2
fi
shift || true
parts=${*:-$all}
for part in $parts; do
    [[ " $all " == *" $part "* ]] || { echo "unknown part '$part'; parts: $all" >&2; exit 2; }
done
mkdir -p "$out"
# The interpreter that holds PyTorch: "python3" there ($PYTHON overrides), else "python".
py=${PYTHON:-$(command -v python3 || command -v python)}
export PYTHONPATH="$PWD:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then  # benchmarks/gpu_wheels.sh's wheels, for a machine without network
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "installing .whl/ failed" >&2; exit 2; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
# What the parts import (the wheels are installed without their dependencies): said at once, not
# as a traceback minutes into a part.
modules="hydra, omegaconf, yaml, packaging, pytest"
[[ " $parts " == *" deepxde"* ]] && modules="$modules, sklearn, matplotlib, deepxde"
"$py" -c "import $modules" \
    || { echo "a package gpu.sh needs is missing (above); bash benchmarks/gpu_wheels.sh makes its wheel" >&2; exit 2; }

status=0
run() {  # run NAME SECONDS COMMAND...: LIMIT_<NAME> overrides SECONDS
    local name=$1 limit_var="LIMIT_$1"
    local limit=${!limit_var:-$2}
    shift 2
    echo "== $name (limit $limit s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    echo "rc=$rc after $((SECONDS - start)) s" >>"$out/$name.txt"
    tail -n 25 "$out/$name.txt"
    [[ $rc -eq 0 ]] || status=1
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# pyproject.toml's options run the tests on pytest-xdist workers (-n auto); where it is not
# installed, the same options without -n, in one process. Each test's name is printed as it
# ends (-v), so a part stopped by its limit says where; pytest-timeout, where installed, stops
# a test that hangs.
if "$py" -c "import xdist" 2>/dev/null; then serial=(-n 0); suite=(-n 8); else serial=(-o "addopts=-m 'not slow'"); suite=("${serial[@]}"); fi
"$py" -c "import pytest_timeout" 2>/dev/null && serial+=(--timeout 120) && suite+=(--timeout 300)

for part in $parts; do
    case $part in
    tests) run tests 300 "$py" -m pytest -v --tb=short "${serial[@]}" -p no:cacheprovider \
        tests/test_cuda_graph.py tests/test_preflight.py tests/test_fused.py ;;
    # The variants below are those the targets turn on: the kernels first, then without them, and
    # the compiled ones (tens of seconds to compile each) last. benchmarks/RESULTS.md has the
    # others from 2026-11-27.
    # At 2,000 + 400 points derivatives.one_pass=auto evaluates both sets together on a GPU;
    # +separate is the step with a pass per set, side by side.
    deepxde) run deepxde 200 "$py" benchmarks/vs_deepxde.py --device cuda --iterations 1000 --variants deepxde \
        forward+triton+graph+fused forward+triton+graph+fused+separate forward+graph+fused \
        forward+graph+fused+separate forward+graph forward+triton+graph forward autograd \
        forward+triton+compile+graph+fused forward+compile+graph+fused ;;
    deepxde200k) run deepxde200k 200 "$py" benchmarks/vs_deepxde.py --device cuda --iterations 200 \
        --interior 200000 --boundary 40000 --variants deepxde forward+triton+graph forward+triton+graph+tf32 \
        forward forward+triton+compile+graph forward+compile+graph forward+compile+graph+tf32 ;;
    triton) run triton 130 "$py" benchmarks/triton_blocks.py --device cuda --seconds 0.5 ;;
    tf32) run tf32 90 "$py" benchmarks/tf32.py ;;
    engines) run engines 180 "$py" benchmarks/derivatives.py --device cuda --seconds 0.5 ;;
    stochastic) run stochastic 120 "$py" benchmarks/derivatives.py --device cuda --dims 10 100 1000 --points 1000 \
        --variants stochastic stochastic+graph stochastic+triton+graph forward forward+graph forward+triton+graph \
        forward+gram forward+gram+graph ;;
    suite) run suite 300 "$py" -m pytest -q -x "${suite[@]}" -p no:cacheprovider ;;
    esac
done
exit $status
