/* mlpfbench info: the machine's topology and how ranks would be placed. */
#include <stdio.h>
#include <string.h>

#include "binding.h"
#include "blas_core.h"
#include "cli.h"
#include "cpu_isa.h"
#include "gpu.h"
#include "mpictx.h"

int cmd_info(int argc, char **argv)
{
    long long ranks = g_mpi.local_size;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: mlpfbench info [--ranks-per-node N] [--blas-core NAME]\n\n"
                   "Prints the node's topology (hwloc) and the binding plan of N ranks per node\n"
                   "(default: the ranks of this launch on this node), the BLAS and the kernels it\n"
                   "runs (--blas-core NAME: as a run with it would), and what the binary was built for.\n");
            return 0;
        } else if (!strcmp(argv[i], "--ranks-per-node")) {
            if (cli_int(argv[i], i + 1 < argc ? argv[i + 1] : NULL, 1, 4096, &ranks) != 0) return 2;
            i++;
        } else {
            fprintf(stderr, "mlpfbench: unknown option '%s' for info (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (g_mpi.rank == 0) {
        printf("host %s, %d rank(s) in this launch, %d on this node\n", g_mpi.host, g_mpi.size, g_mpi.local_size);
        char err[512];
        int n = gpu_device_count(err, sizeof err);
        if (n < 0) printf("GPUs: none usable: %s\n", err);
        for (int d = 0; d < n; d++) {
            gpu_info gi;
            if (gpu_describe(d, &gi, err, sizeof err) != 0) printf("GPU %d: %s\n", d, err);
            else
                printf("GPU %d: %s, sm_%d%d, %d SMs, %.0f MiB (%.0f free), driver %d.%d, runtime %d.%d\n", d,
                       gi.name, gi.cc_major, gi.cc_minor, gi.multiprocessors, gi.total_mib, gi.free_mib,
                       gi.driver_version / 1000, gi.driver_version % 1000 / 10, gi.runtime_version / 1000,
                       gi.runtime_version % 1000 / 10);
        }
        char line[1024];
        blas_core_describe(line, sizeof line);
        const cpu_isa_info *ci = cpu_isa_this();
        printf("BLAS: %s; this CPU runs %s kernels%s%s\n", line, g_blas.cpu_class,
               g_blas.suits[0] ? ", mlpfbench's core for it: " : "", g_blas.suits);
        printf("BLAS check: %s\n", g_blas.check);
        if (g_blas.notes[0]) printf("BLAS notes: %s\n", g_blas.notes);
        cpu_isa_names(cpu_isa_built(), line, sizeof line);
        printf("binary: ARCH=%s, built on %s; may use: %s\n", cpu_isa_built_arch(), cpu_isa_built_host(), line);
        cpu_isa_names(ci->has, line, sizeof line);
        printf("CPU: %s (%s, family %#x model %#x); runs: %s\n", ci->model, ci->vendor, ci->family, ci->model_id, line);
        binding_print_plan((int)ranks);
    }
    return 0;
}
