/* Which GPU a rank uses (issue 15, one rank per GPU). The device is the
 * rank's index among the node's ranks, counted among the GPUs visible to it:
 *
 * - exactly one visible GPU: device 0. Slurm's --gpus-per-task=1 and
 *   --gpu-bind give each task its own CUDA_VISIBLE_DEVICES; whether that one
 *   GPU is shared with another rank the caller finds by comparing the GPUs'
 *   UUIDs across the node's ranks (gpuplace_find_shared).
 * - at least as many visible GPUs as ranks on the node: the local index,
 *   SLURM_LOCALID when this rank is an srun task of a step that has as many
 *   tasks on this node as MPI counts (so not under mpirun inside an
 *   allocation, where every rank inherits its daemon's SLURM_LOCALID),
 *   otherwise the MPI local rank.
 * - more than one but fewer visible GPUs than ranks: refused, unless sharing
 *   was asked for (--allow-shared-gpu): then the index modulo the count.
 * - none: refused, naming CUDA_VISIBLE_DEVICES and Slurm's GPU variables.
 *
 * Pure functions of their arguments and the environment (no CUDA, no MPI). */
#ifndef MLPF_GPUPLACE_H
#define MLPF_GPUPLACE_H

#include <stddef.h>

typedef struct {
    int device;       /* CUDA device index among the visible ones */
    int local_index;  /* the rank's index on its node used for the choice */
    int shared;       /* 1 when --allow-shared-gpu made ranks share (index modulo visible count) */
    char source[160]; /* how it was chosen, for messages and the report */
} gpu_placement;

/* Choose this rank's GPU. mpi_local_rank/local_size: the rank's index and
 * count on its node (MPI shared-memory split); n_visible: cudaGetDeviceCount's
 * answer. Reads CUDA_VISIBLE_DEVICES, SLURM_LOCALID, SLURM_STEP_TASKS_PER_NODE
 * and SLURM_NODEID (and names Slurm's GPU variables in errors). 0, or -1 with
 * a clear message in err (naming the variables seen). */
int gpuplace_choose(int mpi_local_rank, int local_size, int n_visible, int allow_shared, gpu_placement *out, char *err,
                    size_t n);
/* n identity strings of `stride` bytes each (GPU UUIDs of the ranks of one
 * node, by local rank; each NUL-terminated within its stride or cut there):
 * 1 and the first pair of local ranks (*a < *b, lowest *a, then lowest *b)
 * holding the same non-empty string, or 0. */
int gpuplace_find_shared(const char *ids, int n, size_t stride, int *a, int *b);

#endif
