# Binaries that run where they land (issue 16; ARCH is set in the Makefile,
# docs/design.md "Binaries that run where they land"):
#   - src/base/build_target.c records the target: the compiler's feature
#     macros (what it may use anywhere in the binary), the ARCH and the host;
#   - src/base/cpu_isa.c and src/commands/isa_guard.c, the start-up check
#     (a constructor that runs before main), are compiled without the -march
#     flags, for the x86-64 baseline: the check must not itself run an
#     instruction it checks for;
#   - $(BUILD)/.flags holds the compiler and its flags, and every object
#     depends on it: another ARCH (or CFLAGS) in the same BUILD recompiles all.
BASELINE_SRC := src/base/cpu_isa.c src/commands/isa_guard.c
ISA_FLAG_PATTERNS := -march=% -mtune=% -mavx% -msse% -mfma% -mbmi% -mf16c -mlzcnt -mpopcnt -mmovbe -mpclmul \
                     -maes -msha -mgfni -mvaes -mvpclmulqdq -mamx% -mxop -madx -mrdrnd -mrdseed -mcx16 -mprfchw
BASELINE_MARCH := $(if $(filter x86_64,$(shell uname -m)),-march=x86-64 -mtune=generic)
cflags_for = $(if $(filter $1,$(BASELINE_SRC)),$(filter-out $(ISA_FLAG_PATTERNS),$(ALL_CFLAGS)) $(BASELINE_MARCH),$(ALL_CFLAGS))

# "native (znver3)", "x86-64-v3", or "compiler default" (no -march in CFLAGS,
# e.g. the sanitizer build)
MARCH_USED = $(patsubst -march=%,%,$(lastword $(filter -march=%,$(CFLAGS))))
MARCH_NATIVE = $(shell $(CC) -march=native -Q --help=target 2>/dev/null | awk '$$1 == "-march=" {print $$2; exit}')
ARCH_LABEL = $(if $(MARCH_USED),$(MARCH_USED)$(if $(filter native,$(MARCH_USED)),$(if $(MARCH_NATIVE), ($(MARCH_NATIVE)))),compiler default)
BUILD_HOST := $(shell hostname 2>/dev/null || echo unknown)
$(BUILD)/src/base/build_target.o: CPPFLAGS += -DMLPF_BUILD_ARCH='"$(ARCH_LABEL)"' -DMLPF_BUILD_HOST='"$(BUILD_HOST)"'

$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@$(if $(MARCH_USED),$(CC) -march=$(MARCH_USED) -E -x c /dev/null -o /dev/null 2>/dev/null \
	  || { echo "error: ARCH=$(MARCH_USED): $(CC) does not know -march=$(MARCH_USED) (try native, x86-64-v2, x86-64-v3, x86-64-v4, none, or a CPU name that $(CC) -march takes)" >&2; exit 1; })
	@echo '$(CC) $(ALL_CFLAGS) | $(ARCH_LABEL)' > $@.new
	@cmp -s $@.new $@ && rm $@.new || mv $@.new $@
$(LIB_OBJ) $(APP_OBJ) $(TEST_OBJ) $(BUILD)/tests/parity_dump.o $(BUILD)/tests/reader_check.o \
  $(CUDA_SHARED_C:%.c=$(BUILD)/pic/%.o): $(BUILD)/.flags
