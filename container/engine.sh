#!/bin/bash
# Which container engine can build and run the image here: podman, else
# docker, else buildah (build only). Prints its name, or says why none can
# and exits 1. With --run, buildah does not count (it cannot run the image
# as hep-score does).
#   container/engine.sh [--run]
# MLPF_ENGINE=podman|docker|buildah picks one (still checked).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
need_run=0
[[ ${1:-} == --run ]] && need_run=1
candidates=(podman docker buildah)
((need_run)) && candidates=(podman docker)
[[ -n ${MLPF_ENGINE:-} ]] && candidates=("$MLPF_ENGINE")
why=()
for e in "${candidates[@]}"; do
    if ! command -v "$e" >/dev/null 2>&1; then
        why+=("$e: not installed")
        continue
    fi
    case $e in
        podman) out=$(timeout 60 podman info 2>&1) ;;
        docker) out=$(timeout 60 docker info 2>&1) ;;
        buildah) out=$(timeout 60 buildah info 2>&1) ;;
        *) why+=("$e: not an engine this script knows"); continue ;;
    esac
    if [[ $? -eq 0 ]]; then
        echo "$e"
        exit 0
    fi
    why+=("$e: $(grep -m1 -iE 'error|cannot|denied' <<<"$out" | cut -c1-160)")
done
printf 'no container engine can %s images here (%s)\n' "$( ((need_run)) && echo run || echo build)" \
    "$(IFS=';'; echo "${why[*]}")" >&2
exit 1
