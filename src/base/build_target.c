/* What this binary was built for (include/cpu_isa.h): compiled with the
 * build's flags, so the compiler's feature macros here are exactly the
 * instruction sets it could use in every other file. Data only: nothing
 * in this file executes. MLPF_BUILD_ARCH and MLPF_BUILD_HOST come from
 * mk/arch.mk. */
#include "cpu_isa.h"

#ifndef MLPF_BUILD_ARCH
#define MLPF_BUILD_ARCH "unknown (built outside the Makefile)"
#endif
#ifndef MLPF_BUILD_HOST
#define MLPF_BUILD_HOST "unknown"
#endif

const char mlpf_build_arch[] = MLPF_BUILD_ARCH;
const char mlpf_build_host[] = MLPF_BUILD_HOST;

const isa_set mlpf_build_isa = 0
#ifdef __SSE3__
    | ISA_BIT(ISA_SSE3)
#endif
#ifdef __SSSE3__
    | ISA_BIT(ISA_SSSE3)
#endif
#ifdef __SSE4_1__
    | ISA_BIT(ISA_SSE4_1)
#endif
#ifdef __SSE4_2__
    | ISA_BIT(ISA_SSE4_2)
#endif
#ifdef __SSE4A__
    | ISA_BIT(ISA_SSE4A)
#endif
#ifdef __POPCNT__
    | ISA_BIT(ISA_POPCNT)
#endif
#ifdef __GCC_HAVE_SYNC_COMPARE_AND_SWAP_16
    | ISA_BIT(ISA_CX16)
#endif
#ifdef __PCLMUL__
    | ISA_BIT(ISA_PCLMUL)
#endif
#ifdef __AES__
    | ISA_BIT(ISA_AES)
#endif
#ifdef __MOVBE__
    | ISA_BIT(ISA_MOVBE)
#endif
#ifdef __XSAVE__
    | ISA_BIT(ISA_XSAVE)
#endif
#ifdef __RDRND__
    | ISA_BIT(ISA_RDRND)
#endif
#ifdef __RDSEED__
    | ISA_BIT(ISA_RDSEED)
#endif
#ifdef __ADX__
    | ISA_BIT(ISA_ADX)
#endif
#ifdef __SHA__
    | ISA_BIT(ISA_SHA)
#endif
#ifdef __PRFCHW__
    | ISA_BIT(ISA_PRFCHW)
#endif
#ifdef __LZCNT__
    | ISA_BIT(ISA_LZCNT)
#endif
#ifdef __BMI__
    | ISA_BIT(ISA_BMI)
#endif
#ifdef __BMI2__
    | ISA_BIT(ISA_BMI2)
#endif
#ifdef __AVX__
    | ISA_BIT(ISA_AVX)
#endif
#ifdef __F16C__
    | ISA_BIT(ISA_F16C)
#endif
#ifdef __FMA__
    | ISA_BIT(ISA_FMA)
#endif
#ifdef __FMA4__
    | ISA_BIT(ISA_FMA4)
#endif
#ifdef __XOP__
    | ISA_BIT(ISA_XOP)
#endif
#ifdef __AVX2__
    | ISA_BIT(ISA_AVX2)
#endif
#ifdef __VAES__
    | ISA_BIT(ISA_VAES)
#endif
#ifdef __VPCLMULQDQ__
    | ISA_BIT(ISA_VPCLMULQDQ)
#endif
#ifdef __GFNI__
    | ISA_BIT(ISA_GFNI)
#endif
#ifdef __AVXVNNI__
    | ISA_BIT(ISA_AVXVNNI)
#endif
#ifdef __AVX512F__
    | ISA_BIT(ISA_AVX512F)
#endif
#ifdef __AVX512CD__
    | ISA_BIT(ISA_AVX512CD)
#endif
#ifdef __AVX512BW__
    | ISA_BIT(ISA_AVX512BW)
#endif
#ifdef __AVX512DQ__
    | ISA_BIT(ISA_AVX512DQ)
#endif
#ifdef __AVX512VL__
    | ISA_BIT(ISA_AVX512VL)
#endif
#ifdef __AVX512IFMA__
    | ISA_BIT(ISA_AVX512IFMA)
#endif
#ifdef __AVX512VBMI__
    | ISA_BIT(ISA_AVX512VBMI)
#endif
#ifdef __AVX512VBMI2__
    | ISA_BIT(ISA_AVX512VBMI2)
#endif
#ifdef __AVX512VNNI__
    | ISA_BIT(ISA_AVX512VNNI)
#endif
#ifdef __AVX512BITALG__
    | ISA_BIT(ISA_AVX512BITALG)
#endif
#ifdef __AVX512VPOPCNTDQ__
    | ISA_BIT(ISA_AVX512VPOPCNTDQ)
#endif
#ifdef __AVX512BF16__
    | ISA_BIT(ISA_AVX512BF16)
#endif
#ifdef __AVX512FP16__
    | ISA_BIT(ISA_AVX512FP16)
#endif
#ifdef __AVX512VP2INTERSECT__
    | ISA_BIT(ISA_AVX512VP2INTERSECT)
#endif
    ;
