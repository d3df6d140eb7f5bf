#!/usr/bin/env bash
# Runs a command (by default `cargo check` of the whole workspace with the `cuda` feature) with a
# CUDA 13.2 toolchain taken from the Python package registry, on a machine with or without a GPU.
#
#   scripts/cuda-toolchain.sh                      # cargo check --workspace --all-targets --features cuda
#   scripts/cuda-toolchain.sh cargo build --release --workspace --all-targets --features cuda
#   scripts/cuda-toolchain.sh env                  # print the environment it sets
#
# What it sets up once, under $FDSM_CUDA_TOOLCHAIN (default target/cuda-toolchain):
# - a Python virtual environment with NVIDIA's wheels of nvcc, its front-end headers, NVVM, the
#   runtime, NVRTC, cuBLAS and cuRAND, at the versions below (nvcc must not be newer than the
#   runtime headers: CCCL refuses a mismatch);
# - `root/`, a CUDA_ROOT in the layout Candle's build scripts expect: `bin`, `include`, `nvvm`
#   from the wheels and a `lib` of links with the unversioned names the linker looks for;
# - `root/lib/libcuda.so`, a link-time stand-in for the driver library (which only an NVIDIA
#   driver installs): every `cu*` entry point that cudarc's driver bindings declare, as empty
#   functions, with the driver's soname `libcuda.so.1`. An executable linked against it records
#   `libcuda.so.1` and loads the real driver at run time; without a driver, opening a CUDA
#   device fails with an error, nothing else is affected. It exists because Candle links cudarc
#   with `dynamic-linking`, so every binary and test needs a `libcuda.so` at link time.
#
# The command runs with PATH (nvcc), CUDA_ROOT, CUDA_COMPUTE_CAP (default 80, the A100; set it
# to your GPU's, e.g. 86 or 89, to build its kernels), LD_LIBRARY_PATH (the wheels' libraries
# at run time) and CARGO_TARGET_DIR (default target/cuda, so the CPU build's cache is kept).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

toolchain="${FDSM_CUDA_TOOLCHAIN:-$repo/target/cuda-toolchain}"
python="${PYTHON:-python3}"
# The versions checked together (cudarc 0.19 supports CUDA up to 13.4).
wheels=(
    "nvidia-cuda-nvcc==13.2.86"
    "nvidia-cuda-crt==13.2.86"
    "nvidia-nvvm==13.2.86"
    "nvidia-cuda-runtime==13.2.86"
    "nvidia-cuda-nvrtc==13.2.86"
    "nvidia-cuda-cccl==13.3.5.0.6"
    "nvidia-cublas==13.4.1.3"
    "nvidia-curand==10.4.5.25"
)

say() { echo "cuda-toolchain: $*" >&2; }

venv="$toolchain/venv"
stamp="$toolchain/wheels.txt"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${wheels[*]}" ]; then
    command -v "$python" >/dev/null || { say "needs $python (with venv) to install NVIDIA's wheels"; exit 1; }
    say "installing ${#wheels[@]} NVIDIA wheels into $venv (about 1 GB, once)"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check --progress-bar off "${wheels[@]}" >&2
    echo "${wheels[*]}" >"$stamp"
fi
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cu="$site/nvidia/cu13"
[ -x "$cu/bin/nvcc" ] || { say "no nvcc in $cu/bin after installing the wheels"; exit 1; }

root="$toolchain/root"
if [ ! -f "$root/lib/libcuda.so" ] || [ "$stamp" -nt "$root/lib/libcuda.so" ]; then
    say "assembling CUDA_ROOT in $root"
    rm -rf "$root"
    mkdir -p "$root/lib"
    for entry in "$cu"/*; do
        [ "$(basename "$entry")" = lib ] || ln -s "$entry" "$root/$(basename "$entry")"
    done
    for lib in "$cu"/lib/*; do
        name="$(basename "$lib")"
        ln -s "$lib" "$root/lib/$name"
        # libfoo.so.13 -> libfoo.so, the name `-lfoo` looks for.
        case "$name" in
            *.so.*) plain="${name%%.so.*}.so"; [ -e "$root/lib/$plain" ] || ln -s "$lib" "$root/lib/$plain" ;;
        esac
    done
    # The driver's entry points as cudarc declares them, from the cudarc sources of Cargo.lock.
    cudarc="$(cargo metadata --format-version 1 --features experiments/cuda --manifest-path "$repo/Cargo.toml" 2>/dev/null |
        "$venv/bin/python" -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
    bindings="$(dirname "$cudarc")/src/driver/sys/mod.rs"
    [ -f "$bindings" ] || { say "cudarc's driver bindings not found at $bindings"; exit 1; }
    grep -oE '^\s+fn cu[A-Za-z0-9_]+\(' "$bindings" | sed -E 's/^\s+fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
        sed -E 's/.*/void &(void) {}/' >"$toolchain/libcuda_stub.c"
    count="$(wc -l <"$toolchain/libcuda_stub.c")"
    [ "$count" -gt 100 ] || { say "only $count driver entry points found in $bindings"; exit 1; }
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/libcuda.so" "$toolchain/libcuda_stub.c"
    say "link-time libcuda.so with $count entry points (soname libcuda.so.1)"
fi

export PATH="$root/bin:$PATH"
export CUDA_ROOT="$root"
export CUDA_PATH="$root"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-80}"
export LD_LIBRARY_PATH="$cu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/cuda}"

if [ "$#" -eq 0 ]; then
    set -- cargo check --workspace --all-targets --features cuda
fi
if [ "$1" = env ]; then
    for v in PATH CUDA_ROOT CUDA_PATH CUDA_COMPUTE_CAP LD_LIBRARY_PATH CARGO_TARGET_DIR; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
    exit 0
fi
say "nvcc $("$root/bin/nvcc" --version | grep -oE 'release [0-9.]+' | cut -d' ' -f2), CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
exec "$@"
