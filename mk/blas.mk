# The BLAS kernels and the start-up instruction-set guard (issue 16).
#   make test-blas   tests/blas.sh: the core choice (OpenBLAS's own, the
#                    user's, corrected through a restart after a check in a
#                    child process, cores that fail their check), gemm-bench's
#                    judgement against the FMA peak, the bench table's
#                    verdicts, and a binary built with ARCH=x86-64-v4 (in
#                    $(ARCH_V4_BUILD)) refused at start on a CPU without AVX-512
ARCH_V4_BUILD ?= build-arch-v4

.PHONY: test-blas
test-blas:
	@$(MAKE) --no-print-directory BUILD=$(ARCH_V4_BUILD) ARCH=x86-64-v4 $(ARCH_V4_BUILD)/mlpfbench
	tests/blas.sh $(BUILD) $(ARCH_V4_BUILD)

TEST_TARGETS += test-blas
