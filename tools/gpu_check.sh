#!/usr/bin/env bash
# The GPU check of issue 15 in one go: `tools/benchmark.py gpu` on a machine with one GPU.
#
#   tools/gpu_check.sh fetch          here, once (network and the project's venv): puts what the GPU
#                                     machine's python3 lacks into build/gpu_site (ignored by git,
#                                     about 55 MB): the PyAV and decord wheels (pip download for
#                                     CPython 3.12 x86-64) and the pure-Python fvcore, iopath, yacs,
#                                     termcolor, pytorchvideo and parameterized copied from the venv.
#   bash tools/gpu_check.sh [ARGS]    on the GPU machine (carry build/gpu_site; about 3-5 minutes,
#                                     run it with a timeout of ~8): installs build/gpu_site if there,
#                                     runs `python3 tools/benchmark.py gpu --device cuda --out
#                                     docs/PERFORMANCE.md ARGS` under a 420 s timeout and writes under
#                                     $OUT: gpu_section.md (the report), gpu_stderr.txt, machine.txt,
#                                     PERFORMANCE.md (the doc with the gpu-cuda section).
#   tools/gpu_check.sh record FILE    here, afterwards: puts the returned gpu_section.md into
#                                     docs/PERFORMANCE.md's gpu-cuda section (the rest untouched).
#
# Environment: PYTHON (the interpreter; fetch/record: the project's venv, check: python3),
# OUT (default output/gpu_check), GPU_CHECK_DOC (default docs/PERFORMANCE.md),
# GPU_CHECK_TIMEOUT (seconds, default 420), GPU_CHECK_DEVICE (default cuda; cpu with --tiny tries the script here).
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=build/gpu_site
PURE=(fvcore iopath yacs termcolor pytorchvideo parameterized)
VENV_PYTHON=/work/main/.venv/bin/python

fetch() {
    local python=${PYTHON:-$VENV_PYTHON} packages
    packages=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    rm -rf "$SITE"
    mkdir -p "$SITE/wheels" "$SITE/pure"
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux2010_x86_64 -d "$SITE/wheels" av==18.1.0 decord==0.6.0
    for name in "${PURE[@]}"; do cp -r "$packages/$name" "$SITE/pure/"; done
    find "$SITE/pure" -name __pycache__ -prune -exec rm -rf {} +
    du -sh "$SITE"
}

check() {
    local python=${PYTHON:-python3} doc=${GPU_CHECK_DOC:-docs/PERFORMANCE.md} rc
    OUT=${OUT:-output/gpu_check}
    mkdir -p "$OUT"
    export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
    if [ -d "$SITE/wheels" ]; then
        "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/gpu_site "$SITE"/wheels/*.whl
        PYTHONPATH="$PWD:/tmp/gpu_site:$PWD/$SITE/pure"
    fi
    { uptime; nvidia-smi; "$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'; } \
        > "$OUT/machine.txt" 2>&1 || true
    set +e
    timeout "${GPU_CHECK_TIMEOUT:-420}" "$python" tools/benchmark.py gpu --device "${GPU_CHECK_DEVICE:-cuda}" --out "$doc" "$@" \
        > "$OUT/gpu_section.md" 2> "$OUT/gpu_stderr.txt"
    rc=$?
    set -e
    cp "$doc" "$OUT/PERFORMANCE.md" 2>/dev/null || true
    if [ ! -s "$OUT/gpu_section.md" ]; then  # stopped early: the partial section it wrote after each part
        local name="gpu-${GPU_CHECK_DEVICE:-cuda}"
        sed -n "/<!-- $name:begin -->/,/<!-- $name:end -->/p" "$doc" | sed '1d;$d' > "$OUT/gpu_section.md" || true
    fi
    grep -v "it/s" "$OUT/gpu_stderr.txt" | tail -n 40 || true  # the training steps' progress bars left out
    cat "$OUT/gpu_section.md"
    echo "tools/benchmark.py gpu: exit status $rc"
    return "$rc"
}

record() {
    local section=${1:?usage: tools/gpu_check.sh record PATH/gpu_section.md}
    PYTHONPATH="$PWD" "${PYTHON:-$VENV_PYTHON}" -c 'import sys; from pathlib import Path
from cgnl_video.benchmarks import update_section
update_section(Path(sys.argv[2]), "gpu-cuda", Path(sys.argv[1]).read_text())' "$section" "${GPU_CHECK_DOC:-docs/PERFORMANCE.md}"
}

case "${1:-}" in
    fetch) fetch ;;
    record) record "${2:-}" ;;
    *) check "$@" ;;
esac
