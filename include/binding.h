/* Placement of a rank on its node with hwloc. CPU-only: the node's cores are
 * split evenly among the ranks on the node (local rank r of L takes cores
 * [r C / L, (r+1) C / L)); with more ranks than cores each rank gets one core,
 * shared round robin. The whole process is bound, so OpenMP and OpenBLAS
 * threads stay inside the set, and the default thread count is its size. */
#ifndef MLPF_BINDING_H
#define MLPF_BINDING_H

typedef struct {
    int n_packages, n_numa, n_cores, n_pus;
    int first_core, n_bound_cores; /* the plan for this rank */
    int bound;                     /* binding applied */
    char cpus[256];                /* the rank's actual CPU set after binding, as a list */
} binding_info;

/* Compute the plan for local rank lr of lsize and, if apply, bind to it.
 * Returns 0, or -1 with a message on stderr. */
int binding_setup(int lr, int lsize, int apply, binding_info *out);
/* Print the topology and the plan for lsize local ranks. */
void binding_print_plan(int lsize);

#endif
