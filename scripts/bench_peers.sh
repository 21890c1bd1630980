#!/usr/bin/env bash
# make bench-peers: the current PyTorch release (scripts/peers-requirements.txt,
# pinned) from PyPI into the project's own virtual environment (PEERS_VENV,
# default .venv-peers, ignored by git), for make bench, which then compares
# mlpfbench with it (eager and torch.compile) beside Debian's python3-torch.
# Records what it installed in $PEERS_VENV/installed.txt (pip freeze) and
# $PEERS_VENV/peer.json (torch_bench.py --describe), then runs the tiny
# preset's check against torch_twin (eager, seconds). Running it again
# brings the venv to the pinned versions; delete the folder to start anew.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PEERS_VENV:-.venv-peers}
req=scripts/peers-requirements.txt
# python3-venv for the venv; g++ and the Python headers for torch.compile,
# which compiles C++ kernels on the CPU
scripts/install-deps.sh --peers
if [[ ! -x $venv/bin/python ]]; then
    echo "bench-peers: creating $venv (/usr/bin/python3 -m venv)"
    /usr/bin/python3 -m venv "$venv"
fi
echo "bench-peers: pip install -r $req into $venv ($(grep -E '^[a-z]' "$req" | tr '\n' ' '))"
start=$(date +%s)
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
"$venv/bin/python" -m pip freeze --disable-pip-version-check >"$venv/installed.txt"
"$venv/bin/python" scripts/torch_bench.py --describe >"$venv/peer.json"
echo "bench-peers: installed in $(($(date +%s) - start)) s, $(du -sh "$venv" | cut -f1) in $venv; pip freeze: $venv/installed.txt"
/usr/bin/python3 - "$venv/peer.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("bench-peers: %s: BLAS %s, CPU capability %s, torch.compile %s, GPU %s"
      % (d["peer"], d["blas"], d["cpu_capability"], "yes" if d["compile"] else "no",
         "yes" if d["cuda_available"] else "none seen"))
PY
"$venv/bin/python" scripts/torch_bench.py --check | tail -1 | sed 's/^/bench-peers: /'
echo "bench-peers: make bench now compares with it (eager and compiled)"
