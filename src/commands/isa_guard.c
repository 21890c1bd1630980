/* The start-up instruction-set guard (issue 16): before main, before any
 * code compiled for the build's ARCH has run, refuse to start on a CPU that
 * lacks an instruction set the binary was built for, with a message that
 * names them (include/cpu_isa.h), instead of dying later with SIGILL.
 *
 * This file and src/base/cpu_isa.c are compiled without the build's -march
 * flags (mk/arch.mk): the compiler may not use AVX or AVX-512 in them. A
 * constructor of the program runs after the shared libraries' own (OpenBLAS,
 * MPI, libgomp: not built with our flags) and, with priority 101, before
 * every other constructor of the program; the program has no others. It is
 * linked as an object of mlpfbench, not through libmlpf.a, so the linker
 * cannot leave it out. */
#include <stdio.h>
#include <unistd.h>

#include "cpu_isa.h"

__attribute__((constructor(101))) static void isa_guard(void)
{
    char msg[2048];
    if (cpu_isa_check(msg, sizeof msg)) {
        fputs(msg, stderr);
        fflush(stderr);
        _exit(MLPF_EXIT_ISA);
    }
}
