#!/bin/bash
# Build the mlpf-bmk image (make image) or its CUDA variant (make image-gpu).
#
#   container/build-image.sh [--gpu] [--tag NAME:TAG] [--dataset 'GENERATE OPTIONS']
#                            [--default-args 'TRAIN OPTIONS']
#
# The engine is podman, else docker, else buildah (container/engine.sh), with
# the project's container/containers.conf for podman and buildah. The base is
# Debian 12: BASE if given, else docker.io/library/debian:12 when it is here
# or can be pulled, else one made on this machine with mmdebstrap from its
# configured apt sources (said so, and recorded in the image's image.json).
# --dataset replaces the carried dataset's size (default: --hepscore, 2,000
# training + 200 validation events); its seed is always DATASET_SEED (42).
# --default-args: train options the entry point uses before --extra-args
# (MLPF_BMK_DEFAULT_ARGS in the image; the tests' image trains 'tiny').
# --gpu builds FROM the CPU image (built first when missing) and adds the
# CUDA side: libmlpf_cuda.so, built here with nvcc, and the CUDA runtime,
# cuBLAS and NCCL libraries it links, copied from CUDA_HOME (/usr/local/cuda).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/container/containers.conf}
version=$(sed -n 's/^#define MLPF_VERSION "\(.*\)"/\1/p' include/report.h)
gpu=0 tag="" dataset="--hepscore" defaults=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --gpu) gpu=1; shift ;;
        --tag) tag=${2:?--tag needs NAME:TAG}; shift 2 ;;
        --dataset) dataset=${2?--dataset needs generate options}; shift 2 ;;
        --default-args) defaults=${2?--default-args needs train options}; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-image.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
cpu_tag=localhost/mlpf-bmk:v$version
gpu_tag=localhost/mlpf-bmk:v$version-cuda
if ((gpu)); then tag=${tag:-$gpu_tag}; else tag=${tag:-$cpu_tag}; fi
say() { echo "build-image: $*"; }

engine=$(container/engine.sh) || exit 1
say "engine $engine ($($engine --version 2>/dev/null | head -1))"
build() { # build [ARGS...] CONTEXT
    case $engine in
        podman) podman build --network host "$@" ;;
        docker) docker build --network host "$@" ;;
        buildah) buildah bud --network host "$@" ;;
    esac
}
exists() { # IMAGE
    case $engine in
        podman) podman image exists "$1" ;;
        docker) docker image inspect "$1" >/dev/null 2>&1 ;;
        buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
    esac
}

# ------------------------------------------------------------------ the base
base_image() {
    local want=docker.io/library/debian:12 local_base=localhost/mlpf-bmk-base:debian12
    if [[ -n ${BASE:-} ]]; then
        base=$BASE base_note="$BASE (given)"
        return
    fi
    mkdir -p build/image
    if exists "$want" || timeout 120 "$engine" pull "$want" >build/image/pull.log 2>&1; then
        base=$want base_note="$want"
        return
    fi
    local why
    why=$(grep -m1 -iE 'error|denied|no such host' build/image/pull.log | cut -c1-200 || true)
    if exists "$local_base"; then
        say "no base image can be pulled ($why); using $local_base, made here earlier by mmdebstrap"
        base=$local_base
        base_note=$(cat "$root/build/image/base-note" 2>/dev/null || echo "Debian 12 made with mmdebstrap on the build host")
        return
    fi
    say "no base image can be pulled ($why): making the Debian 12 base here with mmdebstrap from this machine's apt sources"
    command -v mmdebstrap >/dev/null || { echo "build-image: mmdebstrap is missing (apt-get install mmdebstrap, or scripts/install-deps.sh --test)" >&2; exit 1; }
    # the machine's configured Debian sources (the files apt reads), bookworm only
    local sources=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && grep -qE '^[^#]*bookworm' "$f" && sources+=("$f")
    done
    ((${#sources[@]} > 0)) || { echo "build-image: no Debian 12 (bookworm) apt source is configured on this machine" >&2; exit 1; }
    mkdir -p build/image
    local tar=build/image/debian12-base.tar
    say "mmdebstrap --variant=minbase bookworm $tar ${sources[*]}"
    mmdebstrap --variant=minbase --format=tar --aptopt='Acquire::Retries "3"' bookworm "$tar" "${sources[@]}" \
        >build/image/mmdebstrap.log 2>&1 || { tail -20 build/image/mmdebstrap.log; echo "build-image: mmdebstrap failed (log: build/image/mmdebstrap.log)" >&2; exit 1; }
    case $engine in
        podman) podman import "$tar" "$local_base" >/dev/null ;;
        docker) docker import "$tar" "$local_base" >/dev/null ;;
        buildah) local c; c=$(buildah from scratch); buildah add "$c" "$tar" / >/dev/null; buildah commit -q "$c" "$local_base" >/dev/null; buildah rm "$c" >/dev/null ;;
    esac
    rm -f "$tar"
    base=$local_base
    base_note="Debian 12 made with mmdebstrap $(date -u +%Y-%m-%d) from $(grep -hoE '^[^#]*(URIs:|deb) *[a-z]+://[^ ]+' "${sources[@]}" | grep -oE '[a-z]+://[^ ]+' | sort -u | tr '\n' ' ' | sed 's/ $//') (no base image could be pulled)"
    echo "$base_note" >build/image/base-note
    say "base $local_base: $base_note"
}

git_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -modified)

if ((gpu == 0)); then
    base_image
    say "building $tag (base $base, dataset: generate --seed 42 $dataset)"
    build -f container/Containerfile --build-arg BASE="$base" --build-arg BASE_NOTE="$base_note" \
        --build-arg GIT_COMMIT="$git_commit" --build-arg DATASET_ARGS="$dataset" --build-arg DEFAULT_ARGS="$defaults" \
        --build-arg IMAGE_NAME="$tag" -t "$tag" .
    say "built $tag; run it as hep-score does:"
    say "  $engine run --rm --network host -v \$PWD/run0:/results $tag -W --threads 2 --copies 1 --events 24"
    exit 0
fi

# ------------------------------------------------------------------ CUDA image
cuda_home=${CUDA_HOME:-/usr/local/cuda}
cpu_image=${CPU_IMAGE:-$cpu_tag}
if ! exists "$cpu_image"; then
    say "the CPU image $cpu_image is missing: building it first"
    "$0" --tag "$cpu_image" --dataset "$dataset"
fi
nvcc=$(command -v nvcc || true)
[[ -n $nvcc ]] || nvcc=$cuda_home/bin/nvcc
[[ -x $nvcc ]] || { echo "build-image: no CUDA toolkit here (nvcc not in PATH nor in $cuda_home/bin): the CUDA image takes its libraries from the build host's toolkit" >&2; exit 1; }
stage=build/image/gpu
rm -rf "$stage"
mkdir -p "$stage/lib64"
say "building libmlpf_cuda.so with $nvcc"
make --no-print-directory BUILD=build/image/gpu-build CUDA_HOME="$cuda_home" build/image/gpu-build/libmlpf_cuda.so >/dev/null
cp build/image/gpu-build/libmlpf_cuda.so "$stage/"
# what it links from the toolkit (ldd), and NCCL for the multi-GPU backend
libs=$(ldd "$stage/libmlpf_cuda.so" | awk -v h="$(readlink -f "$cuda_home")" '$3 ~ "^"h || $3 ~ "^/usr/local/cuda" {print $3}')
for l in $libs "$cuda_home"/lib64/libnccl.so.2; do
    [[ -e $l ]] || continue
    # hard links where the file systems allow it (nothing copied), else copies
    cp -lL "$l" "$stage/lib64/$(basename "$l")" 2>/dev/null || cp -L "$l" "$stage/lib64/$(basename "$l")"
done
say "CUDA libraries from $cuda_home: $(cd "$stage/lib64" && ls | tr '\n' ' ')($(du -shL "$stage/lib64" | cut -f1))"
build -f container/Containerfile.gpu --build-arg CPU_IMAGE="$cpu_image" \
    --build-arg CUDA_NOTE="CUDA libraries copied from the build host's $(readlink -f "$cuda_home")" -t "$tag" "$stage"
rm -rf "$stage"
say "built $tag; run it as hep-score does (GPU hosts):"
say "  $engine run --rm --network host --gpus all -v \$PWD/run0:/results $tag -W --threads 4 --copies 1 --events 1000"
