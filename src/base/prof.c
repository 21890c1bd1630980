#include "prof.h"

#include <string.h>

#include "clock.h"

const char *const PROF_NAMES[PROF_N] = {"none", "matrix_products", "binning", "kernel_matrix",
                                        "elementwise", "loss", "distance_products_fp64"};

static double acc[PROF_N], last;
static int cur = PROF_NONE;

int prof_switch(int kind)
{
    double now = mlpf_now();
    if (cur != PROF_NONE) acc[cur] += now - last;
    last = now;
    int prev = cur;
    cur = kind;
    return prev;
}

void prof_get(double out[PROF_N])
{
    memcpy(out, acc, sizeof acc);
    out[PROF_NONE] = 0.0;
}

void prof_reset(void)
{
    memset(acc, 0, sizeof acc);
    cur = PROF_NONE;
}
