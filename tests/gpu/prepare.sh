#!/usr/bin/env bash
# Here, before a GPU run: build what tests/gpu/run.sh needs and collect the
# shared libraries the binaries use that a bare GPU machine lacks (MPI, HDF5,
# hwloc, OpenBLAS, ...: everything ldd resolves outside the CUDA toolkit and
# the C library), into build/gpulibs. Then, on the device tool:
#   run(command="tests/gpu/run.sh", carry=["build"], timeout_s=360)
set -euo pipefail
cd "$(dirname "$0")/../.."
# built for x86-64-v3 (AVX2 + FMA), not for this machine's CPU: the GPU
# machine's CPU is another one, and a binary built for a CPU it lacks an
# instruction set of refuses to start there (exit 3, docs/design.md)
make -s build ARCH=x86-64-v3
out=build/gpulibs
rm -rf "$out"
mkdir -p "$out"
for b in build/mlpfbench build/libmlpf_cuda.so build/test_backend_gpu; do
    ldd "$b" | awk '/=> \// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcudart|libcublas[^/]*)\.so' \
    | grep -v '/usr/local/cuda' | while read -r lib; do cp -L "$lib" "$out/"; done
du -sh build | sed 's/^/gpu prepare: carry build (/; s/$/; the device tool carries 64 MiB at most)/'
