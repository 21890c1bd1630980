/* MPI test of the data pipeline (run under mpirun -np 1, 2, 3, ...):
 *   reader_check DIR BATCH_PER_RANK SEED EPOCHS GEN_SEED MEAN_ELEMENTS
 * Reads every epoch of the training split of a dataset made by
 * 'mlpfbench generate --seed GEN_SEED --elements MEAN_ELEMENTS', checks on each
 * rank that every event equals what the generator makes for it, checks on rank
 * 0 that every event was read exactly once per epoch across all ranks, and
 * prints the global batch sequence ("epoch step: sorted ids") so that runs with
 * different rank counts can be compared. Exit 0 only if all checks pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "loader.h"
#include "mpictx.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    mpictx_init(&argc, &argv);
    if (argc != 7) {
        if (g_mpi.rank == 0) fprintf(stderr, "usage: reader_check DIR B SEED EPOCHS GEN_SEED MEAN\n");
        mpictx_finalize();
        return 2;
    }
    const char *dir = argv[1];
    int B = atoi(argv[2]), epochs = atoi(argv[4]);
    uint64_t seed = strtoull(argv[3], NULL, 10);
    gen_config gen = gen_config_default();
    gen.seed = strtoull(argv[5], NULL, 10);
    int mean = atoi(argv[6]);
    gen.mean_elements = mean;
    gen.min_elements = mean * 4 / 5 > 0 ? mean * 4 / 5 : 1;
    gen.max_elements = mean * 32 / 25 > gen.min_elements ? mean * 32 / 25 : gen.min_elements;

    dataset_t ds;
    if (dataset_open(&ds, dir, "train", g_mpi.comm) != 0) {
        mpictx_finalize();
        return 1;
    }
    loader *l = loader_create(&ds, B, g_mpi.rank, g_mpi.size, seed, 1, g_mpi.threads_ok);
    int64_t steps = loader_steps(l), N = ds.events;
    int bad = 0;
    int64_t *ids = malloc(sizeof(int64_t) * B);
    /* per step: B ids per rank, -1 padded, gathered to rank 0 */
    int64_t *mine = malloc(sizeof(int64_t) * B), *all = malloc(sizeof(int64_t) * B * g_mpi.size);
    int64_t *seen = calloc(N, sizeof(int64_t));
    for (int ep = 0; ep < epochs; ep++) {
        loader_begin_epoch(l, ep);
        memset(seen, 0, sizeof(int64_t) * N);
        mlpf_batch b;
        int n;
        for (int64_t k = 0; k < steps; k++) {
            if (!loader_next(l, &b, ids, &n)) {
                fprintf(stderr, "rank %d: epoch %d ended after %lld of %lld steps\n", g_mpi.rank, ep,
                        (long long)k, (long long)steps);
                bad = 1;
                break;
            }
            for (int i = 0; i < n; i++) { /* the data equals what was written */
                int64_t rows = b.offsets[i + 1] - b.offsets[i];
                if (rows != gen_event_size(&gen, (uint64_t)ids[i])) {
                    fprintf(stderr, "rank %d: event %lld has %lld rows\n", g_mpi.rank, (long long)ids[i], (long long)rows);
                    bad = 1;
                    continue;
                }
                float *X = malloc(sizeof(float) * BATCH_X_COLS * rows), *Y = malloc(sizeof(float) * BATCH_Y_COLS * rows);
                gen_event(&gen, (uint64_t)ids[i], X, Y);
                if (memcmp(X, b.X + b.offsets[i] * BATCH_X_COLS, sizeof(float) * BATCH_X_COLS * rows) ||
                    memcmp(Y, b.y + b.offsets[i] * BATCH_Y_COLS, sizeof(float) * BATCH_Y_COLS * rows)) {
                    fprintf(stderr, "rank %d: event %lld differs from what was written\n", g_mpi.rank, (long long)ids[i]);
                    bad = 1;
                }
                free(X);
                free(Y);
            }
            for (int i = 0; i < B; i++) mine[i] = i < n ? ids[i] : -1;
            MPI_Gather(mine, B, MPI_INT64_T, all, B, MPI_INT64_T, 0, g_mpi.comm);
            if (g_mpi.rank == 0) {
                int m = 0;
                for (int i = 0; i < B * g_mpi.size; i++)
                    if (all[i] >= 0) {
                        if (all[i] >= N || seen[all[i]]++) {
                            fprintf(stderr, "epoch %d: event %lld read twice or out of range\n", ep, (long long)all[i]);
                            bad = 1;
                        }
                        all[m++] = all[i];
                    }
                qsort(all, m, sizeof(int64_t), cmp_i64);
                printf("%d %lld:", ep, (long long)k);
                for (int i = 0; i < m; i++) printf(" %lld", (long long)all[i]);
                printf("\n");
            }
            batch_free(&b);
        }
        if (loader_next(l, &b, ids, &n)) {
            fprintf(stderr, "rank %d: epoch %d has more than %lld steps\n", g_mpi.rank, ep, (long long)steps);
            bad = 1;
        }
        if (g_mpi.rank == 0)
            for (int64_t i = 0; i < N; i++)
                if (seen[i] != 1) {
                    fprintf(stderr, "epoch %d: event %lld read %lld times\n", ep, (long long)i, (long long)seen[i]);
                    bad = 1;
                }
    }
    loader_stats st = loader_get_stats(l);
    if (st.events <= 0 && N >= g_mpi.size) bad = 1;
    loader_free(l);
    dataset_close(&ds);
    int any = mpictx_any(bad);
    free(ids), free(mine), free(all), free(seen);
    mpictx_finalize();
    return any ? 1 : 0;
}
