/* What this CPU can run, and what this binary was built for (issue 16).
 *
 * The CPU side comes from cpuid, with AVX and AVX-512 counted only where
 * the operating system has enabled their registers (XGETBV): a CPU or a VM
 * may report AVX-512 that the kernel does not save, and then it faults.
 * The binary side is the compiler's feature macros when the build compiled
 * src/base/build_target.c with the build's flags (make ARCH=..., mk/arch.mk):
 * exactly the instruction sets the compiler was allowed to use anywhere.
 *
 * src/base/cpu_isa.c and the start-up guard (src/commands/isa_guard.c, a
 * constructor that runs before main) are compiled WITHOUT the build's -march
 * flags: the check must not itself run an instruction it checks for.
 * x86-64 only; elsewhere both sets are empty and the guard passes. */
#ifndef MLPF_CPU_ISA_H
#define MLPF_CPU_ISA_H

#include <stddef.h>
#include <stdint.h>

/* The exit status of a binary refused by the start-up guard: this CPU lacks
 * an instruction set the binary was built for. */
#define MLPF_EXIT_ISA 3

enum {
    ISA_SSE3, ISA_SSSE3, ISA_SSE4_1, ISA_SSE4_2, ISA_SSE4A, ISA_POPCNT, ISA_CX16, ISA_PCLMUL, ISA_AES,
    ISA_MOVBE, ISA_XSAVE, ISA_RDRND, ISA_RDSEED, ISA_ADX, ISA_SHA, ISA_PRFCHW, ISA_LZCNT, ISA_BMI, ISA_BMI2,
    ISA_AVX, ISA_F16C, ISA_FMA, ISA_FMA4, ISA_XOP, ISA_AVX2, ISA_VAES, ISA_VPCLMULQDQ, ISA_GFNI, ISA_AVXVNNI,
    ISA_AVX512F, ISA_AVX512CD, ISA_AVX512BW, ISA_AVX512DQ, ISA_AVX512VL, ISA_AVX512IFMA, ISA_AVX512VBMI,
    ISA_AVX512VBMI2, ISA_AVX512VNNI, ISA_AVX512BITALG, ISA_AVX512VPOPCNTDQ, ISA_AVX512BF16, ISA_AVX512FP16,
    ISA_AVX512VP2INTERSECT,
    ISA_N
};
typedef uint64_t isa_set;
#define ISA_BIT(x) ((isa_set)1 << (x))
/* The AVX-512 subsets whose presence means "an AVX-512 CPU" (x86-64-v4). */
#define ISA_AVX512_CORE (ISA_BIT(ISA_AVX512F) | ISA_BIT(ISA_AVX512BW) | ISA_BIT(ISA_AVX512DQ) | ISA_BIT(ISA_AVX512VL))
#define ISA_AVX2_FMA (ISA_BIT(ISA_AVX2) | ISA_BIT(ISA_FMA))

/* lower-case names, as gcc's -m options spell them (avx512f, fma, ...) */
extern const char *const ISA_NAMES[ISA_N];

typedef struct {
    char vendor[16];  /* GenuineIntel, AuthenticAMD, ... ("" off x86) */
    char model[64];   /* the brand string */
    int family, model_id;
    isa_set has;      /* usable here: cpuid, and for AVX/AVX-512 enabled by the OS */
    isa_set reported; /* what cpuid reports, enabled or not */
} cpu_isa_info;

/* This CPU (detected once). */
const cpu_isa_info *cpu_isa_this(void);
/* What the compiler could use in this binary, the ARCH it was built with
 * ("native (znver3)", "x86-64-v3", "compiler default") and the build host. */
isa_set cpu_isa_built(void);
const char *cpu_isa_built_arch(void);
const char *cpu_isa_built_host(void);
/* The names of a set, space-separated ("none" if empty). */
void cpu_isa_names(isa_set s, char *buf, size_t n);
/* The start-up check: 0 when this CPU has every instruction set the binary
 * was built for; else 1, with the refusal (naming the missing sets, the
 * binary's ARCH, this CPU and what to do) in msg. */
int cpu_isa_check(char *msg, size_t n);

#endif
