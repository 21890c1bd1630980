/* mlpfbench generate: write a synthetic dataset of HDF5 shards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cli.h"
#include "dataset.h"
#include "mpictx.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench generate --out DIR [options]\n"
            "\n"
            "Writes a synthetic Delphes-like dataset (shared/spec/data.md): HDF5 shards of\n"
            "ragged events and DIR/manifest.json with event counts and CRC-32 checksums.\n"
            "The same options give byte-identical files on any machine. Under mpirun the\n"
            "ranks write the shards between them.\n"
            "\n"
            "options:\n"
            "  --out DIR            dataset directory to create (required)\n"
            "  --train-events N     training events (default 64)\n"
            "  --valid-events M     validation events (default 16)\n"
            "  --shards K           training shards (default 4; validation shards in proportion)\n"
            "  --seed S             generator seed (default 42)\n"
            "  --elements N         mean elements per event (default 5000; sizes 0.8 N .. 1.28 N)\n"
            "  --hepscore           the HEPscore benchmark's size: 2000 training and 200\n"
            "                       validation events in 20 shards (as 20 ttbar files)\n"
            "  --force              replace DIR if it exists\n"
            "  -h, --help           this help\n");
}


int cmd_generate(int argc, char **argv)
{
    const char *out = NULL;
    long long train = 64, valid = 16, shards = 4, seed = 42, elements = 5000;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (g_mpi.rank == 0) usage(stdout);
            return 0;
        } else if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        } else if (!strcmp(a, "--hepscore")) {
            train = 2000, valid = 200, shards = 20;
            continue;
        } else if (!strcmp(a, "--out")) {
            if (!v || !*v) {
                fprintf(stderr, "mlpfbench: --out needs a directory\n");
                return 2;
            }
            out = v;
        } else if (!strcmp(a, "--train-events")) rc = cli_int(a, v, 1, 100000000, &train);
        else if (!strcmp(a, "--valid-events")) rc = cli_int(a, v, 1, 100000000, &valid);
        else if (!strcmp(a, "--shards")) rc = cli_int(a, v, 1, 100000, &shards);
        else if (!strcmp(a, "--seed")) rc = cli_int(a, v, 0, 1LL << 62, &seed);
        else if (!strcmp(a, "--elements")) rc = cli_int(a, v, 1, 1000000, &elements);
        else {
            fprintf(stderr, "mlpfbench: unknown option '%s' for generate (see --help)\n", a);
            return 2;
        }
        if (rc != 0) return 2;
        i++;
    }
    if (!out) {
        fprintf(stderr, "mlpfbench: generate needs --out DIR (see --help)\n");
        return 2;
    }
    if (shards > train) shards = train;
    gen_config gen = gen_config_default();
    gen.seed = (uint64_t)seed;
    gen.mean_elements = (int)elements;
    gen.min_elements = (int)(elements * 4 / 5) > 0 ? (int)(elements * 4 / 5) : 1;
    gen.max_elements = (int)(elements * 32 / 25) > gen.min_elements ? (int)(elements * 32 / 25) : gen.min_elements;
    double t0 = mlpf_now();
    if (dataset_generate(out, &gen, train, valid, (int)shards, force, g_mpi.comm) != 0) return 1;
    double dt = mlpf_now() - t0;
    if (g_mpi.rank == 0)
        printf("mlpfbench generate: wrote %s: %lld training + %lld validation events in %.1f s "
               "(%.1f events/s, %d rank(s))\n",
               out, train, valid, dt, (train + valid) / dt, g_mpi.size);
    return 0;
}
