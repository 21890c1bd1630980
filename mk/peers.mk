# The PyTorch peers of make bench (issue 19).
#   make bench-peers   the current PyTorch release (scripts/peers-requirements.txt)
#                      from PyPI into $(PEERS_VENV), ignored by git
#   make test-peers    tests/peers.sh: the bench table's choice of the best
#                      checked peer (recorded runs), torch_bench.py's checks;
#                      --compile --check only where $(PEERS_VENV) exists
PEERS_VENV ?= .venv-peers

.PHONY: bench-peers test-peers
bench-peers:
	PEERS_VENV=$(PEERS_VENV) scripts/bench_peers.sh

test-peers:
	PEERS_VENV=$(abspath $(PEERS_VENV)) tests/peers.sh $(BUILD)

TEST_TARGETS += test-peers
