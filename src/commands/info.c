/* mlpfbench info: the machine's topology and how ranks would be placed. */
#include <stdio.h>
#include <string.h>

#include "binding.h"
#include "cli.h"
#include "gpu.h"
#include "mpictx.h"

int cmd_info(int argc, char **argv)
{
    long long ranks = g_mpi.local_size;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: mlpfbench info [--ranks-per-node N]\n\n"
                   "Prints the node's topology (hwloc) and the binding plan of N ranks per node\n"
                   "(default: the ranks of this launch on this node).\n");
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
        binding_print_plan((int)ranks);
    }
    return 0;
}
