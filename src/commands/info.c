/* mlpfbench info: the machine's topology and how ranks would be placed. */
#include <stdio.h>
#include <stdlib.h>
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
    int ranks_given = 0;
    const char *topology = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: mlpfbench info [--ranks-per-node N] [--topology FILE.xml] [--blas-core NAME]\n\n"
                   "Prints the node's topology (hwloc), the GPUs, the binding plan of N ranks per node\n"
                   "(default: one rank per GPU, or the ranks of this launch on this node without GPUs)\n"
                   "on the CPU and each GPU's cores, the BLAS and the kernels it runs (--blas-core NAME:\n"
                   "as a run with it would), and what the binary was built for.\n"
                   "--topology FILE.xml: only the plans, for another machine's hwloc XML topology\n"
                   "(lstopo --of xml > FILE.xml there); its GPUs are its NVIDIA PCI devices.\n");
            return 0;
        } else if (!strcmp(argv[i], "--ranks-per-node")) {
            if (cli_int(argv[i], i + 1 < argc ? argv[i + 1] : NULL, 1, 4096, &ranks) != 0) return 2;
            ranks_given = 1;
            i++;
        } else if (!strcmp(argv[i], "--topology")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "mlpfbench: info: --topology needs an hwloc XML file (lstopo --of xml)\n");
                return 2;
            }
            topology = argv[++i];
        } else {
            fprintf(stderr, "mlpfbench: unknown option '%s' for info (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (g_mpi.rank != 0) return 0;
    if (topology) /* another machine: its plans only; what follows is about this one */
        return binding_print_plan((int)ranks, !ranks_given, topology, NULL, -1) == 0 ? 0 : 1;
    printf("host %s, %d rank(s) in this launch, %d on this node\n", g_mpi.host, g_mpi.size, g_mpi.local_size);
    char err[512];
    int n = gpu_device_count(err, sizeof err);
    if (n < 0) printf("GPUs: none usable: %s\n", err);
    binding_gpu *gpus = n > 0 ? calloc((size_t)n, sizeof *gpus) : NULL;
    int described = 0; /* the plan uses CUDA's GPUs when every one could be described */
    for (int d = 0; d < n; d++) {
        gpu_info gi;
        if (gpu_describe(d, &gi, err, sizeof err) != 0) {
            printf("GPU %d: %s\n", d, err);
            continue;
        }
        printf("GPU %d: %s (%s, %s), sm_%d%d, %d SMs, %.0f MiB (%.0f free), driver %d.%d, runtime %d.%d\n", d,
               gi.name, gi.pci_bus_id[0] ? gi.pci_bus_id : "PCI bus id unknown", gi.uuid, gi.cc_major,
               gi.cc_minor, gi.multiprocessors, gi.total_mib, gi.free_mib, gi.driver_version / 1000,
               gi.driver_version % 1000 / 10, gi.runtime_version / 1000, gi.runtime_version % 1000 / 10);
        if (gpus) {
            snprintf(gpus[d].pci, sizeof gpus[d].pci, "%s", gi.pci_bus_id);
            snprintf(gpus[d].name, sizeof gpus[d].name, "%.95s", gi.name);
            described++;
        }
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
    int rc = binding_print_plan((int)ranks, !ranks_given, NULL, gpus, described == n && n > 0 ? n : -1);
    free(gpus);
    return rc == 0 ? 0 : 1;
}
