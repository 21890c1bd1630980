# mlpfbench — build, run and test.
#
#   make run     install missing OS packages, build, run the default benchmark
#   make test    install missing OS packages (and the test tools), build, run every test
#                (unit tests, CLI tests, the CUDA backend on its host execution path,
#                PyTorch parity, then the unit tests under ASan+UBSan)
#   make test-gpu-host  the CUDA kernels and backend on the CPU (no GPU needed)
#   make         build only (needs the packages already installed)
#   make sanitize  build with ASan + UBSan and run the unit tests and the MPI checks
#   make bench   the CPU benchmark table (scripts/bench.sh), appended to docs/benchmarks.md
#   make fuzz    the shard reader and option parser under libFuzzer (FUZZ_TIME s each)
#
# Dependencies are found with pkg-config; scripts/install-deps.sh installs them.

CC       ?= gcc
BUILD    ?= build
PKGS     := hdf5-openmpi hwloc check ompi-c jansson zlib
# OpenBLAS built with OpenMP (Debian's libopenblas-openmp-dev): its threads are
# the same OpenMP pool as our loops. With the pthreads build, its threads and
# OpenMP's spinning workers share the cores and training runs 1.8x slower
# (docs/benchmarks.md). Linked by path with an rpath, so the system-wide
# libopenblas.so.0 alternative (pthreads by default) does not matter.
BLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
# The CPU the binary is built for: make ARCH=native (default), x86-64-v3,
# x86-64-v4, sapphirerapids, ... or none (the compiler's default). The
# binary records it and refuses to start on a CPU that lacks what it needs
# (mk/arch.mk, docs/design.md "Binaries that run where they land"). Only
# the command line sets it: an ARCH in the environment (often the kernel's
# name for the architecture) is ignored.
ARCH     := native
ARCH_FLAGS = $(if $(filter none,$(ARCH)),,-march=$(ARCH))
OPT      ?= -O3 $(ARCH_FLAGS)
# Warnings are errors in CI (CI=true) and whenever WERROR=1.
ifneq ($(filter true 1,$(CI) $(WERROR)),)
  WFLAGS := -Werror
endif
WFLAGS   += -Wall -Wextra -Wshadow -Wno-unused-parameter
CFLAGS   ?= $(OPT) -g
CPPFLAGS += -Iinclude
# -fno-math-errno, -fno-trapping-math: we never read errno or floating-point
# exception flags; neither changes a computed value, and together they let
# the compiler vectorise the element-wise loops (sqrt, selects).
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fopenmp -fno-math-errno -fno-trapping-math $(WFLAGS) $(CFLAGS) $(CPPFLAGS) $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -fopenmp -lm

# The CUDA side (include/gpu.h, cuda/): built whenever nvcc is found (in PATH
# or CUDA_HOME), for sm_80 and sm_90, as $(BUILD)/libmlpf_cuda.so next to
# mlpfbench, which loads it only when a GPU function is called (cuda/gpu.c):
# the CPU commands never pay for loading cuBLAS. Without nvcc there is no such
# library and the GPU functions say so.
CUDA_HOME ?= /usr/local/cuda
NVCC     ?= $(shell command -v nvcc 2>/dev/null || { test -x $(CUDA_HOME)/bin/nvcc && echo $(CUDA_HOME)/bin/nvcc; })
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
GPU_SO   := $(if $(NVCC),$(BUILD)/libmlpf_cuda.so $(BUILD)/test_backend_gpu)

# Files whose floating point must be bit-identical on every machine
# (initialisation and event generation): no fused multiply-add contraction.
PORTABLE := src/base/rng.c src/model/params.c src/data/generator.c

# The layers, top to bottom (docs/design.md): commands -> run control ->
# backends (src/cpu, cuda) -> data -> distribution, model -> base.
LIB_SRC  := $(wildcard src/run/*.c src/cpu/*.c src/data/*.c src/dist/*.c src/model/*.c src/base/*.c) \
            cuda/gpu.c src/commands/cli.c
APP_SRC  := $(filter-out src/commands/cli.c,$(wildcard src/commands/*.c))
TEST_SRC := tests/test_main.c tests/test_model.c tests/test_generator.c tests/test_gpumon.c tests/test_binding.c

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
APP_OBJ  := $(APP_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

# Tests share the machine (MPI jobs, a local Slurm): never run them in parallel.
.NOTPARALLEL:

.PHONY: bench fuzz deps-fuzz all build deps deps-test run test gpu-host test-gpu-host test-unit test-parity test-cli test-data test-distributed test-report test-srun test-slurm sanitize clean help

all: build
build: check-pkgs $(BUILD)/mlpfbench $(GPU_SO) $(BUILD)/test_unit $(BUILD)/parity_dump $(BUILD)/reader_check

help:
	@sed -n '2,10p' Makefile

# Fail early, with the names, when a dependency is missing.
.PHONY: check-pkgs
check-pkgs:
	@missing=""; for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || missing="$$missing $$p"; done; \
	[ -f $(BLAS_DIR)/libopenblas.so ] && [ -f $(BLAS_INC)/cblas.h ] || missing="$$missing openblas-openmp"; \
	if [ -n "$$missing" ]; then \
	  echo "error: pkg-config cannot find:$$missing" >&2; \
	  echo "       run scripts/install-deps.sh (or 'make run' / 'make test', which do)" >&2; exit 1; fi


ifneq ($(MAKECMDGOALS),clean)
PKG_CFLAGS := -I$(BLAS_INC) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas $(shell pkg-config --libs $(PKGS) 2>/dev/null)
endif

$(BUILD)/%.o: %.c $(wildcard include/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(call cflags_for,$<) $(if $(filter $<,$(PORTABLE)),-ffp-contract=off) -c $< -o $@

# The CUDA backend: cuda/*.cu by nvcc, without floating-point contraction
# (--fmad=false: the element-wise arithmetic of include/mathfn.h gives the
# same bits as on the CPU; cuBLAS is not affected), and the few portable C
# files it shares with the CPU side (the parameter layout, Adam's rate),
# compiled position-independent.
CUDA_SRC   := $(wildcard cuda/*.cu)
CUDA_HDR   := $(wildcard cuda/*.cuh) $(wildcard include/*.h)
CUDA_SHARED_C := src/model/params.c src/base/rng.c src/model/optim.c
# cuda/comm.cu uses MPI (the staging transport; the C++ bindings left out)
MPI_CFLAGS := $(filter -I%,$(shell pkg-config --cflags ompi-c 2>/dev/null)) -DOMPI_SKIP_MPICXX
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
NVCC_FLAGS := -O3 -std=c++17 --fmad=false $(CUDA_ARCH) -Xcompiler -fPIC -Iinclude -Icuda $(MPI_CFLAGS) $(if $(filter -Werror,$(WFLAGS)),-Werror all-warnings)
$(BUILD)/cuda/%.o: cuda/%.cu $(CUDA_HDR) Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@
$(BUILD)/pic/%.o: %.c $(wildcard include/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -fvisibility=hidden -ffp-contract=off -c $< -o $@
$(BUILD)/libmlpf_cuda.so: $(CUDA_SRC:%.cu=$(BUILD)/%.o) $(CUDA_SHARED_C:%.c=$(BUILD)/pic/%.o)
	$(NVCC) -shared $(CUDA_ARCH) $^ -o $@ -L$(CUDA_HOME)/lib64 -Xlinker -rpath -Xlinker $(CUDA_HOME)/lib64 \
	  -lcublas -lcudart -lgomp $(MPI_LIBS) -ldl -Xlinker --exclude-libs,ALL

# tests/gpu_host/test_backend.cpp built by nvcc, for a machine with a GPU
# (tests/gpu/run.sh): the same checks as on the host path, on the device.
$(BUILD)/tests/test_backend_gpu.o: tests/gpu_host/test_backend.cpp $(CUDA_HDR) Makefile
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -I$(BLAS_INC) $(filter -I%,$(PKG_CFLAGS)) -x cu -c $< -o $@
$(BUILD)/test_backend_gpu: $(BUILD)/tests/test_backend_gpu.o $(CUDA_SRC:%.cu=$(BUILD)/%.o) $(BUILD)/libmlpf.a
	$(CXX) -fopenmp $^ -o $@ $(PKG_LIBS) -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lm

# The host execution path of the CUDA backend, for the tests (issue 14;
# cuda/host/README.md): the same cuda/*.cu compiled by g++ with
# cuda/host/cuda_host.h, with stand-ins for the CUDA runtime and cuBLAS, into
# $(GPUHOST)/libmlpf_cuda.so next to a copy of mlpfbench (which loads it as
# the product loads the real one), and the test program test_backend. Never
# part of the product: nothing it computes is a GPU figure.
GPUHOST    ?= build-gpuhost
HOST_DIR   ?= cuda/host
HOST_CXX   := g++ -std=c++17 -O2 -g -fopenmp -fPIC -DMLPF_CUDA_HOST -I$(CUDA_HOME)/include -Iinclude -Icuda \
              -I$(BLAS_INC) $(MPI_CFLAGS) -include $(HOST_DIR)/cuda_host.h $(WFLAGS) -Wno-unknown-pragmas
HOST_LIBS  := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -lboost_context $(MPI_LIBS) -fopenmp -lm
HOST_OBJ   := $(CUDA_SRC:cuda/%.cu=$(GPUHOST)/%.o) $(GPUHOST)/stand_ins.o
$(GPUHOST)/%.o: cuda/%.cu $(CUDA_HDR) $(wildcard $(HOST_DIR)/*.h) Makefile
	@mkdir -p $(dir $@)
	$(HOST_CXX) -x c++ -c $< -o $@
$(GPUHOST)/stand_ins.o: $(HOST_DIR)/stand_ins.cpp $(wildcard $(HOST_DIR)/*.h) Makefile
	@mkdir -p $(dir $@)
	$(HOST_CXX) -c $< -o $@
$(GPUHOST)/libmlpf_cuda.so: $(HOST_OBJ) $(CUDA_SHARED_C:%.c=$(BUILD)/pic/%.o)
	g++ -shared $^ -o $@ $(HOST_LIBS) -Wl,--exclude-libs,ALL
$(GPUHOST)/mlpfbench: $(BUILD)/mlpfbench
	@mkdir -p $(dir $@)
	cp $< $@
$(GPUHOST)/test_backend: tests/gpu_host/test_backend.cpp $(HOST_OBJ) $(BUILD)/libmlpf.a
	$(HOST_CXX) $< $(HOST_OBJ) $(BUILD)/libmlpf.a -o $@ $(PKG_LIBS) $(HOST_LIBS)
$(GPUHOST)/test_emulator: tests/gpu_host/test_emulator.cpp $(GPUHOST)/stand_ins.o
	$(HOST_CXX) -x c++ $< -x none $(GPUHOST)/stand_ins.o -o $@ $(HOST_LIBS)
gpu-host: build $(GPUHOST)/libmlpf_cuda.so $(GPUHOST)/mlpfbench $(GPUHOST)/test_backend $(GPUHOST)/test_emulator \
          $(GPUHOST)/nvml/libnvidia-ml.so.1
# The stand-in NVML of the tests (tests/gpu_host/fake_nvml.c; never part of
# the product, nothing it answers is a GPU figure): the unit tests point
# MLPF_NVML_LIBRARY at $(BUILD)/fake_nvml/libnvidia-ml.so.1, the host
# execution path's runs at $(GPUHOST)/nvml/libnvidia-ml.so.1. Built without
# the sanitizers (a plain library dlopen'ed by an instrumented program).
$(BUILD)/fake_nvml/libnvidia-ml.so.1 $(GPUHOST)/nvml/libnvidia-ml.so.1: tests/gpu_host/fake_nvml.c Makefile
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -fPIC -shared -fvisibility=hidden $(WFLAGS) $< -o $@ -lpthread
# (needs the CUDA toolkit's headers, not a GPU; without them it says so)
test-gpu-host:
	@if [ -f $(CUDA_HOME)/include/cuda_runtime_api.h ]; then $(MAKE) --no-print-directory gpu-host && \
	  tests/gpu_host/run.sh $(GPUHOST); \
	else echo "gpu-host: SKIPPED: no CUDA toolkit at $(CUDA_HOME) (its headers are needed to compile cuda/ for the host)"; fi

# The git commit goes into the report; the header changes only when it does.
GIT_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -modified)
.PHONY: FORCE
$(BUILD)/git_commit.h: FORCE
	@mkdir -p $(BUILD)
	@echo '#define GIT_COMMIT "$(GIT_COMMIT)"' > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@
$(BUILD)/src/run/report.o: $(BUILD)/git_commit.h
$(BUILD)/src/run/report.o: CPPFLAGS += -include $(BUILD)/git_commit.h

$(BUILD)/libmlpf.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BUILD)/mlpfbench: $(APP_OBJ) $(BUILD)/libmlpf.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS) $(EXTRA_LDFLAGS)

$(BUILD)/test_unit: $(TEST_OBJ) $(BUILD)/libmlpf.a | $(BUILD)/fake_nvml/libnvidia-ml.so.1
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS) $(EXTRA_LDFLAGS)

$(BUILD)/parity_dump: $(BUILD)/tests/parity_dump.o $(BUILD)/libmlpf.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS) $(EXTRA_LDFLAGS)

$(BUILD)/reader_check: $(BUILD)/tests/reader_check.o $(BUILD)/libmlpf.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS) $(EXTRA_LDFLAGS)

deps:
	@scripts/install-deps.sh
deps-test:
	@scripts/install-deps.sh --test

# The default benchmark: hepscore22 trained on a synthetic dataset under data/,
# generated on first use (a few minutes on 2 cores). HEPSCORE=1 uses the
# HEPscore-sized set (2,000 training + 200 validation events) instead.
ifeq ($(HEPSCORE),1)
  DATA     ?= data/hepscore
  GEN_ARGS ?= --hepscore
else
  DATA     ?= data/default
  GEN_ARGS ?= --train-events 24 --valid-events 8 --shards 4
endif
RUN_ARGS ?=
# The CPU benchmark (issue 9): BLAS limit, training, PyTorch, inference, 1 vs
# 2 ranks; prints the table and appends it to docs/benchmarks.md.
bench: deps-test build
	scripts/bench.sh

run: deps
	@$(MAKE) --no-print-directory build
	@test -f $(DATA)/manifest.json || $(BUILD)/mlpfbench generate --out $(DATA) $(GEN_ARGS)
	$(BUILD)/mlpfbench train --data $(DATA) $(RUN_ARGS)

# What `make test` runs, in order; mk/*.mk may add their own (TEST_TARGETS += ...).
TEST_TARGETS := test-unit test-cli test-gpu-host test-data test-distributed test-report test-srun test-slurm test-parity
-include $(wildcard mk/*.mk)

test: deps-test
	@$(MAKE) --no-print-directory build
	@$(MAKE) --no-print-directory $(TEST_TARGETS)
	@$(MAKE) --no-print-directory sanitize

test-unit: $(BUILD)/fake_nvml/libnvidia-ml.so.1
	$(BUILD)/test_unit

test-cli:
	tests/cli.sh $(BUILD)/mlpfbench

test-data:
	tests/data.sh $(BUILD)
	tests/test_convert.sh

test-distributed:
	tests/distributed.sh $(BUILD)

test-report:
	tests/report.sh $(BUILD)
	tests/bench_smoke.sh $(BUILD)

test-srun:
	tests/srun.sh $(BUILD)

test-slurm:
	tests/test_scaling_report.sh
	tests/test_scaling_model.sh $(BUILD)
	tests/test_sbatch_gpu.sh $(BUILD)
	tests/slurm_sweep.sh $(BUILD)

test-parity:
	tests/parity.sh $(BUILD)

# ASan + UBSan build of the unit tests, in its own build directory.
sanitize: deps
	@$(MAKE) --no-print-directory BUILD=build-san OPT="-O1 -fno-omit-frame-pointer" \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-san/test_unit build-san/mlpfbench build-san/reader_check
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-san/test_unit
	tests/sanitize_mpi.sh build-san

# Fuzzing (libFuzzer, clang): the shard reader and the train option parser,
# FUZZ_TIME seconds each, from the seed corpora in tests/fuzz/ plus the kept
# regression inputs. The reader's HDF5 probe process is the sanitizer build of
# mlpfbench, so that it catches whatever the instrumented harness would.
# Inputs that crash are written to tests/fuzz/crashes/ (keep them in
# tests/fuzz/regress/ once fixed; tests/data.sh runs them).
FUZZ_TIME ?= 60
FUZZ_SAN := -fsanitize=address,undefined
fuzz: deps-fuzz build
	@$(MAKE) --no-print-directory BUILD=build-san OPT="-O1 -fno-omit-frame-pointer" \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" build-san/mlpfbench
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang \
	  CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link $(FUZZ_SAN)" \
	  build-fuzz/libmlpf.a build-fuzz/src/commands/train.o build-fuzz/tests/fuzz/fuzz_shard.o build-fuzz/tests/fuzz/fuzz_cli.o
	clang -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp build-fuzz/tests/fuzz/fuzz_shard.o build-fuzz/libmlpf.a \
	  -o build-fuzz/fuzz_shard $(PKG_LIBS) -lm
	clang -fsanitize=fuzzer $(FUZZ_SAN) -fopenmp build-fuzz/tests/fuzz/fuzz_cli.o build-fuzz/src/commands/train.o \
	  build-fuzz/libmlpf.a -o build-fuzz/fuzz_cli $(PKG_LIBS) -lm
	@mkdir -p tests/fuzz/crashes build-fuzz/corpus-shard build-fuzz/corpus-cli
	tests/fuzz/seed.sh build build-fuzz/corpus-shard build-fuzz/corpus-cli
	rm -f tests/fuzz/crashes/shard-*
	MLPF_PROBE_EXE=$(CURDIR)/build-san/mlpfbench ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0 \
	  build-fuzz/fuzz_shard -fork=1 -ignore_crashes=1 -max_total_time=$(FUZZ_TIME) -rss_limit_mb=4096 \
	  -timeout=20 -artifact_prefix=tests/fuzz/crashes/shard- build-fuzz/corpus-shard tests/fuzz/hdf5-known \
	  tests/fuzz/regress 2>build-fuzz/fuzz_shard.log; grep -E "^#[0-9]+: .*exec/s" build-fuzz/fuzz_shard.log | tail -1
	tests/fuzz/triage.sh build-san tests/fuzz/hdf5-known/* tests/fuzz/regress/* tests/fuzz/crashes/shard-*
	ASAN_OPTIONS=detect_leaks=0 build-fuzz/fuzz_cli -max_total_time=$(FUZZ_TIME) -timeout=5 \
	  -artifact_prefix=tests/fuzz/crashes/cli- build-fuzz/corpus-cli >/dev/null 2>build-fuzz/fuzz_cli.log; grep -E "^#[0-9]+" build-fuzz/fuzz_cli.log | tail -1
deps-fuzz:
	@scripts/install-deps.sh --fuzz

clean:
	rm -rf build build-san build-fuzz build-arch-v4
