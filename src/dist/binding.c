#include "binding.h"

#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void plan(int n_cores, int lr, int lsize, int *first, int *count)
{
    if (lsize <= n_cores) {
        *first = (int)((long long)lr * n_cores / lsize);
        *count = (int)((long long)(lr + 1) * n_cores / lsize) - *first;
    } else { /* oversubscribed: one shared core each */
        *first = lr % n_cores;
        *count = 1;
    }
}

static int topo_counts(hwloc_topology_t t, binding_info *b)
{
    b->n_packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
    b->n_numa = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    b->n_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    b->n_pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    if (b->n_cores <= 0) b->n_cores = b->n_pus; /* some VMs report no cores */
    return b->n_cores > 0 ? 0 : -1;
}

int binding_setup(int lr, int lsize, int apply, binding_info *out)
{
    memset(out, 0, sizeof *out);
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0 || hwloc_topology_load(t) != 0) {
        fprintf(stderr, "mlpfbench: hwloc cannot read the machine's topology\n");
        return -1;
    }
    int rc = topo_counts(t, out);
    if (rc == 0) {
        plan(out->n_cores, lr, lsize, &out->first_core, &out->n_bound_cores);
        hwloc_obj_type_t type = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
        if (apply) {
            hwloc_bitmap_t set = hwloc_bitmap_alloc();
            for (int c = out->first_core; c < out->first_core + out->n_bound_cores; c++) {
                hwloc_obj_t obj = hwloc_get_obj_by_type(t, type, c);
                if (obj) hwloc_bitmap_or(set, set, obj->cpuset);
            }
            if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_PROCESS) != 0) {
                fprintf(stderr, "mlpfbench: local rank %d: cannot bind to cores %d-%d\n", lr,
                        out->first_core, out->first_core + out->n_bound_cores - 1);
                rc = -1;
            } else {
                out->bound = 1;
            }
            hwloc_bitmap_free(set);
        }
        hwloc_bitmap_t cur = hwloc_bitmap_alloc();
        char *s = NULL;
        if (hwloc_get_cpubind(t, cur, HWLOC_CPUBIND_PROCESS) == 0 && hwloc_bitmap_list_asprintf(&s, cur) >= 0) {
            snprintf(out->cpus, sizeof out->cpus, "%s", s);
            free(s);
        }
        hwloc_bitmap_free(cur);
    }
    hwloc_topology_destroy(t);
    return rc;
}

void binding_print_plan(int lsize)
{
    binding_info b;
    if (binding_setup(0, 1, 0, &b) != 0) return;
    printf("topology: %d package(s), %d NUMA node(s), %d core(s), %d hardware thread(s)\n",
           b.n_packages, b.n_numa, b.n_cores, b.n_pus);
    printf("GPUs: none visible to this build (CPU backend)\n");
    printf("binding plan for %d rank(s) per node (--bind auto):\n", lsize);
    for (int r = 0; r < lsize; r++) {
        int first, count;
        plan(b.n_cores, r, lsize, &first, &count);
        printf("  local rank %d: cores %d-%d, %d thread(s)%s\n", r, first, first + count - 1, count,
               lsize > b.n_cores ? " (oversubscribed: cores shared)" : "");
    }
}
