/* The choice of a rank's GPU (include/gpuplace.h). */
#include "gpuplace.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* snprintf for texts that may be cut at n: the cut is intended (a message
 * never overflows), so the result is not looked at. */
__attribute__((format(printf, 3, 4))) static void text(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* A whole non-negative number, the whole string; -1 otherwise. */
static long parse_count(const char *s, const char **end)
{
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *e;
    long v = strtol(s, &e, 10);
    if (errno || v > INT_MAX) return -1;
    if (end) *end = e;
    else if (*e) return -1;
    return v;
}

/* Tasks of this srun step on this node, from SLURM_STEP_TASKS_PER_NODE
 * ("4(x2),3": 4 on each of the first two nodes, 3 on the third) and
 * SLURM_NODEID (this node's index in the step). -1 with the reason in why. */
static int step_tasks_here(char *why, size_t n)
{
    const char *list = getenv("SLURM_STEP_TASKS_PER_NODE");
    if (!list || !*list) {
        snprintf(why, n, "SLURM_STEP_TASKS_PER_NODE is not set (not an srun task)");
        return -1;
    }
    const char *ns = getenv("SLURM_NODEID");
    long node = ns ? parse_count(ns, NULL) : -1;
    long index = 0, found = -1, first = -1, all_same = 1;
    const char *p = list;
    while (*p) {
        const char *e;
        long tasks = parse_count(p, &e), reps = 1;
        if (tasks < 0) goto bad;
        p = e;
        if (*p == '(') {
            if (p[1] != 'x') goto bad;
            reps = parse_count(p + 2, &e);
            if (reps < 1 || *e != ')') goto bad;
            p = e + 1;
        }
        if (*p == ',') p++;
        else if (*p) goto bad;
        if (first < 0) first = tasks;
        if (tasks != first) all_same = 0;
        if (node >= index && node < index + reps) found = tasks;
        index += reps;
    }
    if (found >= 0) return (int)found;
    if (first >= 0 && all_same) return (int)first; /* the same on every node: SLURM_NODEID not needed */
    snprintf(why, n, "SLURM_NODEID=%.20s does not pick a node of SLURM_STEP_TASKS_PER_NODE=%.40s", ns ? ns : "(unset)",
             list);
    return -1;
bad:
    snprintf(why, n, "SLURM_STEP_TASKS_PER_NODE=%.40s is not Slurm's form N or N(xM),...", list);
    return -1;
}

/* CUDA_VISIBLE_DEVICES as it reads in a message. */
static const char *cvd_text(char *buf, size_t n)
{
    const char *v = getenv("CUDA_VISIBLE_DEVICES");
    if (!v) snprintf(buf, n, "CUDA_VISIBLE_DEVICES unset");
    else if (!*v) snprintf(buf, n, "CUDA_VISIBLE_DEVICES empty: it hides every GPU");
    else snprintf(buf, n, "CUDA_VISIBLE_DEVICES=%.100s", v);
    return buf;
}

/* CUDA_VISIBLE_DEVICES and the GPU variables of Slurm that are set. */
static void env_seen(char *buf, size_t n)
{
    static const char *const names[] = {"SLURM_LOCALID",       "SLURM_STEP_GPUS",    "SLURM_JOB_GPUS",
                                        "SLURM_GPUS_PER_TASK", "SLURM_GPUS_ON_NODE", "GPU_DEVICE_ORDINAL"};
    cvd_text(buf, n);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        size_t used = strlen(buf);
        if (v && used + 4 < n) snprintf(buf + used, n - used, ", %s=%.60s", names[i], v);
    }
}

int gpuplace_choose(int mpi_local_rank, int local_size, int n_visible, int allow_shared, gpu_placement *out, char *err,
                    size_t n)
{
    memset(out, 0, sizeof *out);
    out->device = -1;
    char seen[512], cvd[160];
    env_seen(seen, sizeof seen);
    if (local_size < 1 || mpi_local_rank < 0 || mpi_local_rank >= local_size) {
        snprintf(err, n, "GPU placement: local rank %d of %d is not a rank of its node", mpi_local_rank, local_size);
        return -1;
    }

    /* the local index: SLURM_LOCALID where srun started this task directly */
    int index = mpi_local_rank;
    char origin[64], note[200] = "";
    snprintf(origin, sizeof origin, "MPI local rank %d", mpi_local_rank);
    const char *lid = getenv("SLURM_LOCALID");
    if (lid) {
        long v = parse_count(lid, NULL);
        char why[160];
        int here = step_tasks_here(why, sizeof why);
        if (v < 0) snprintf(why, sizeof why, "not a whole number");
        else if (v >= local_size) snprintf(why, sizeof why, "not below the %d ranks MPI counts on this node", local_size);
        else if (here >= 0 && here != local_size)
            snprintf(why, sizeof why, "the step has %d task(s) on this node, MPI %d", here, local_size);
        if (v >= 0 && v < local_size && here == local_size) {
            index = (int)v;
            snprintf(origin, sizeof origin, "SLURM_LOCALID=%d", index);
        } else {
            snprintf(note, sizeof note, "; SLURM_LOCALID=%.20s not used: %.150s", lid, why);
        }
    }
    out->local_index = index;

    if (n_visible <= 0) {
        snprintf(err, n,
                 "no CUDA device is visible to local rank %d of %d on this node (%s); request GPUs (srun "
                 "--gpus-per-task=1, --gpus-per-node) or check CUDA_VISIBLE_DEVICES",
                 index, local_size, seen);
        return -1;
    }
    if (n_visible == 1) {
        out->device = 0;
        snprintf(out->source, sizeof out->source, "the only GPU visible to this rank (%.100s)",
                 cvd_text(cvd, sizeof cvd));
        return 0;
    }
    if (n_visible >= local_size) {
        out->device = index;
        text(out->source, sizeof out->source, "%s of %d visible GPUs (%.60s)%.100s", origin, n_visible,
                 cvd_text(cvd, sizeof cvd), note);
        return 0;
    }
    if (!allow_shared) {
        snprintf(err, n,
                 "local rank %d of %d on this node has no GPU of its own: %d visible (%s); start one rank per GPU "
                 "or pass --allow-shared-gpu",
                 index, local_size, n_visible, seen);
        return -1;
    }
    out->device = index % n_visible;
    out->shared = 1;
    text(out->source, sizeof out->source, "%s modulo %d visible GPUs, shared (--allow-shared-gpu; %.60s)", origin,
             n_visible, cvd_text(cvd, sizeof cvd));
    return 0;
}

int gpuplace_find_shared(const char *ids, int n, size_t stride, int *a, int *b)
{
    if (!ids || stride == 0) return 0;
    for (int i = 0; i < n; i++) {
        const char *x = ids + (size_t)i * stride;
        size_t lx = strnlen(x, stride);
        if (lx == 0) continue;
        for (int j = i + 1; j < n; j++) {
            const char *y = ids + (size_t)j * stride;
            if (strnlen(y, stride) == lx && memcmp(x, y, lx) == 0) {
                if (a) *a = i;
                if (b) *b = j;
                return 1;
            }
        }
    }
    return 0;
}
