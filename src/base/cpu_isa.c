/* cpuid and the start-up instruction-set check (include/cpu_isa.h).
 * Compiled without the build's -march flags (mk/arch.mk, BASELINE_SRC). */
#include "cpu_isa.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define HAVE_CPUID 1
#endif

const char *const ISA_NAMES[ISA_N] = {
    [ISA_SSE3] = "sse3", [ISA_SSSE3] = "ssse3", [ISA_SSE4_1] = "sse4.1", [ISA_SSE4_2] = "sse4.2",
    [ISA_SSE4A] = "sse4a", [ISA_POPCNT] = "popcnt", [ISA_CX16] = "cx16", [ISA_PCLMUL] = "pclmul",
    [ISA_AES] = "aes", [ISA_MOVBE] = "movbe", [ISA_XSAVE] = "xsave", [ISA_RDRND] = "rdrnd",
    [ISA_RDSEED] = "rdseed", [ISA_ADX] = "adx", [ISA_SHA] = "sha", [ISA_PRFCHW] = "prfchw",
    [ISA_LZCNT] = "lzcnt", [ISA_BMI] = "bmi", [ISA_BMI2] = "bmi2", [ISA_AVX] = "avx", [ISA_F16C] = "f16c",
    [ISA_FMA] = "fma", [ISA_FMA4] = "fma4", [ISA_XOP] = "xop", [ISA_AVX2] = "avx2", [ISA_VAES] = "vaes",
    [ISA_VPCLMULQDQ] = "vpclmulqdq", [ISA_GFNI] = "gfni", [ISA_AVXVNNI] = "avxvnni",
    [ISA_AVX512F] = "avx512f", [ISA_AVX512CD] = "avx512cd", [ISA_AVX512BW] = "avx512bw",
    [ISA_AVX512DQ] = "avx512dq", [ISA_AVX512VL] = "avx512vl", [ISA_AVX512IFMA] = "avx512ifma",
    [ISA_AVX512VBMI] = "avx512vbmi", [ISA_AVX512VBMI2] = "avx512vbmi2", [ISA_AVX512VNNI] = "avx512vnni",
    [ISA_AVX512BITALG] = "avx512bitalg", [ISA_AVX512VPOPCNTDQ] = "avx512vpopcntdq",
    [ISA_AVX512BF16] = "avx512bf16", [ISA_AVX512FP16] = "avx512fp16",
    [ISA_AVX512VP2INTERSECT] = "avx512vp2intersect",
};

/* Where cpuid reports each set: leaf, subleaf, register (0 eax .. 3 edx),
 * bit, and the register state the OS must enable (0 none, 1 the YMM
 * registers, 2 also the opmask and ZMM registers). */
static const struct { int isa; unsigned leaf, sub; int reg, bit, os; } WHERE[] = {
    {ISA_SSE3, 1, 0, 2, 0, 0},         {ISA_PCLMUL, 1, 0, 2, 1, 0},       {ISA_SSSE3, 1, 0, 2, 9, 0},
    {ISA_FMA, 1, 0, 2, 12, 1},         {ISA_CX16, 1, 0, 2, 13, 0},        {ISA_SSE4_1, 1, 0, 2, 19, 0},
    {ISA_SSE4_2, 1, 0, 2, 20, 0},      {ISA_MOVBE, 1, 0, 2, 22, 0},       {ISA_POPCNT, 1, 0, 2, 23, 0},
    {ISA_AES, 1, 0, 2, 25, 0},         {ISA_XSAVE, 1, 0, 2, 26, 0},       {ISA_AVX, 1, 0, 2, 28, 1},
    {ISA_F16C, 1, 0, 2, 29, 1},        {ISA_RDRND, 1, 0, 2, 30, 0},
    {ISA_BMI, 7, 0, 1, 3, 0},          {ISA_AVX2, 7, 0, 1, 5, 1},         {ISA_BMI2, 7, 0, 1, 8, 0},
    {ISA_AVX512F, 7, 0, 1, 16, 2},     {ISA_AVX512DQ, 7, 0, 1, 17, 2},    {ISA_RDSEED, 7, 0, 1, 18, 0},
    {ISA_ADX, 7, 0, 1, 19, 0},         {ISA_AVX512IFMA, 7, 0, 1, 21, 2},  {ISA_AVX512CD, 7, 0, 1, 28, 2},
    {ISA_SHA, 7, 0, 1, 29, 0},         {ISA_AVX512BW, 7, 0, 1, 30, 2},    {ISA_AVX512VL, 7, 0, 1, 31, 2},
    {ISA_AVX512VBMI, 7, 0, 2, 1, 2},   {ISA_AVX512VBMI2, 7, 0, 2, 6, 2},  {ISA_GFNI, 7, 0, 2, 8, 0},
    {ISA_VAES, 7, 0, 2, 9, 1},         {ISA_VPCLMULQDQ, 7, 0, 2, 10, 1},  {ISA_AVX512VNNI, 7, 0, 2, 11, 2},
    {ISA_AVX512BITALG, 7, 0, 2, 12, 2}, {ISA_AVX512VPOPCNTDQ, 7, 0, 2, 14, 2},
    {ISA_AVX512VP2INTERSECT, 7, 0, 3, 8, 2}, {ISA_AVX512FP16, 7, 0, 3, 23, 2},
    {ISA_AVXVNNI, 7, 1, 0, 4, 1},      {ISA_AVX512BF16, 7, 1, 0, 5, 2},
    {ISA_LZCNT, 0x80000001u, 0, 2, 5, 0}, {ISA_SSE4A, 0x80000001u, 0, 2, 6, 0},
    {ISA_PRFCHW, 0x80000001u, 0, 2, 8, 0}, {ISA_XOP, 0x80000001u, 0, 2, 11, 1},
    {ISA_FMA4, 0x80000001u, 0, 2, 16, 1},
};

static cpu_isa_info info;
static int detected;

#ifdef HAVE_CPUID
static int leaf(unsigned l, unsigned sub, unsigned r[4])
{
    r[0] = r[1] = r[2] = r[3] = 0;
    unsigned max = __get_cpuid_max(l & 0x80000000u, NULL);
    if (max < l) return 0;
    __cpuid_count(l, sub, r[0], r[1], r[2], r[3]);
    return 1;
}
#endif

const cpu_isa_info *cpu_isa_this(void)
{
    if (detected) return &info;
    detected = 1;
#ifdef HAVE_CPUID
    unsigned r[4];
    if (leaf(0, 0, r)) {
        memcpy(info.vendor, &r[1], 4);
        memcpy(info.vendor + 4, &r[3], 4);
        memcpy(info.vendor + 8, &r[2], 4);
    }
    if (leaf(1, 0, r)) {
        unsigned fam = (r[0] >> 8) & 0xf, mod = (r[0] >> 4) & 0xf;
        if (fam == 0xf) fam += (r[0] >> 20) & 0xff;
        if (fam == 0x6 || fam >= 0xf) mod |= ((r[0] >> 16) & 0xf) << 4;
        info.family = (int)fam;
        info.model_id = (int)mod;
    }
    unsigned brand[12] = {0};
    if (leaf(0x80000004u, 0, r)) {
        for (unsigned k = 0; k < 3; k++) leaf(0x80000002u + k, 0, brand + 4 * k);
        char b[49];
        memcpy(b, brand, 48);
        b[48] = '\0';
        const char *p = b;
        while (*p == ' ') p++;
        snprintf(info.model, sizeof info.model, "%s", p);
    }
    /* the register state the OS saves: XCR0 bits 1-2 (SSE, AVX), 5-7 (opmask, ZMM) */
    int os_ymm = 0, os_zmm = 0;
    if (leaf(1, 0, r) && (r[2] >> 27 & 1)) { /* OSXSAVE */
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        os_ymm = (lo & 0x6) == 0x6;
        os_zmm = os_ymm && (lo & 0xe0) == 0xe0;
    }
    for (size_t k = 0; k < sizeof WHERE / sizeof WHERE[0]; k++) {
        if (!leaf(WHERE[k].leaf, WHERE[k].sub, r) || !(r[WHERE[k].reg] >> WHERE[k].bit & 1)) continue;
        info.reported |= ISA_BIT(WHERE[k].isa);
        if (WHERE[k].os == 0 || (WHERE[k].os == 1 && os_ymm) || (WHERE[k].os == 2 && os_zmm))
            info.has |= ISA_BIT(WHERE[k].isa);
    }
#endif
    return &info;
}

/* src/base/build_target.c, compiled with the build's flags */
extern const isa_set mlpf_build_isa;
extern const char mlpf_build_arch[], mlpf_build_host[];

isa_set cpu_isa_built(void) { return mlpf_build_isa; }
const char *cpu_isa_built_arch(void) { return mlpf_build_arch; }
const char *cpu_isa_built_host(void) { return mlpf_build_host; }

void cpu_isa_names(isa_set s, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < ISA_N && len + 1 < n; k++)
        if (s & ISA_BIT(k)) {
            int w = snprintf(buf + len, n - len, "%s%s", len ? " " : "", ISA_NAMES[k]);
            if (w < 0) break;
            len += (size_t)w < n - len ? (size_t)w : n - len - 1;
        }
    if (!buf[0]) snprintf(buf, n, "none");
}

int cpu_isa_check(char *msg, size_t n)
{
    const cpu_isa_info *c = cpu_isa_this();
    isa_set missing = cpu_isa_built() & ~c->has;
    if (!missing) return 0;
    char names[512];
    cpu_isa_names(missing, names, sizeof names);
    isa_set off = missing & c->reported; /* reported by cpuid, not enabled by the OS */
    snprintf(msg, n,
             "mlpfbench: this CPU cannot run this binary: it was built with ARCH=%s (on host %s) and may use "
             "%s, which this CPU (%s, %s) %s. Started anyway, it would stop with SIGILL (\"Illegal "
             "instruction\") at the first such instruction. Rebuild it for this CPU: 'make clean && make' on "
             "it (ARCH=native), or for every node at once with the oldest node's level, e.g. "
             "'make ARCH=x86-64-v3' (AVX2 + FMA) or 'make ARCH=x86-64-v2'. (exit status %d)\n",
             cpu_isa_built_arch(), cpu_isa_built_host(), names, c->model[0] ? c->model : "unknown model",
             c->vendor[0] ? c->vendor : "unknown vendor",
             off == missing ? "reports but the operating system has not enabled"
             : off          ? "lacks (or has not enabled)"
                            : "lacks",
             MLPF_EXIT_ISA);
    return 1;
}
