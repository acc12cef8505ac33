#!/usr/bin/env bash
# The GPU tests and every GPU benchmark in one call (at most 7 minutes: 120 s of tests, 300 s of benchmarks), results
# in OUTDIR:  bash benchmarks/gpu_all.sh OUTDIR
#
#   OUTDIR/env.txt          card, driver, Python and package versions
#   OUTDIR/tests.log        pytest -m gpu (tests/test_gpu.py) and the CPU-side kernel tests
#   OUTDIR/gpu-<date>.json  benchmarks/gpu.py (launch overhead, microcircuit, 10M neurons)
#
# On a machine without dtb installed: wheels of missing dependencies (nibabel for the brain
# demo test, ...) may be placed in .whl/; dtb itself is installed in editable mode without
# dependencies (the kernels folder maps to dtb.kernels only through setup.cfg).
set -u -o pipefail
OUT=${1:?usage: gpu_all.sh OUTDIR}
mkdir -p "$OUT"
cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

if ! "$PY" -c "import dtb.kernels" 2>/dev/null; then
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/dtb-site \
            .whl/*.whl && export PYTHONPATH=/tmp/dtb-site:${PYTHONPATH:-}
    fi
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1 \
        || echo "editable install failed: see $OUT/install.log"
fi

{
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" -c "import sys, numpy, numba, cupy; print(sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__, 'cupy', cupy.__version__)"
} >"$OUT/env.txt" 2>&1

rc=0
# -ra: skip reasons in the log; -W default: a library's warning is shown, not an error;
# SIGINT on timeout: pytest still prints its summary
timeout -s INT 120 "$PY" -m pytest -q -ra -W default -p no:cacheprovider -o addopts="" \
    tests/test_gpu.py tests/test_gpu_kernels.py 2>&1 | tee "$OUT/tests.log" || rc=1

timeout -s INT 300 "$PY" benchmarks/gpu.py "$OUT" "${@:2}" 2>&1 | tee "$OUT/bench.log" || rc=1
exit $rc
