#!/usr/bin/env bash
# Install the OS packages mlpfbench needs, if any are missing (Debian/Ubuntu).
#   scripts/install-deps.sh          build and run dependencies
#   scripts/install-deps.sh --test   also what the tests need (PyTorch twin, h5py, ...)
#   scripts/install-deps.sh --fuzz   also clang and libFuzzer for 'make fuzz'
#   scripts/install-deps.sh --peers  also what 'make bench-peers' needs (venv, g++, Python headers)
# Off Debian, or without root, it prints exactly which packages are missing.
set -euo pipefail

pkgs=(gcc make pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
      libhwloc-dev hwloc check libsubunit-dev libopenblas-openmp-dev libjansson-dev zlib1g-dev)
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=(python3 python3-numpy python3-h5py python3-torch python3-jsonschema python3-matplotlib g++ libboost-context-dev)
    pkgs+=(python3-yaml podman runc mmdebstrap) # hep-score configurations, the image test
elif [[ "${1:-}" == "--fuzz" ]]; then
    pkgs+=(clang libclang-rt-14-dev libomp-14-dev)
elif [[ "${1:-}" == "--peers" ]]; then
    pkgs+=(python3 python3-venv python3-dev g++)
elif [[ -n "${1:-}" ]]; then
    echo "usage: $0 [--test|--fuzz|--peers]" >&2
    exit 2
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: not a Debian-like system; please install the equivalents of:" >&2
    printf '  %s\n' "${pkgs[@]}" >&2
    exit 1
fi

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: missing packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: not root; install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"
