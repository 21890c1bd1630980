/* mlpfbench train: single-process training on generated events. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batch.h"
#include "cli.h"
#include "config.h"
#include "generator.h"
#include "model.h"
#include "optim.h"

typedef struct {
    const char *preset;
    long long events, elements, batch_size, epochs, max_steps, seed, threads;
    double lr;
} train_opts;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench train [options]\n"
            "\n"
            "Trains the MLPF model on synthetic Delphes-like events (generated in memory,\n"
            "the same for the same seed on any machine) and prints the parameter count,\n"
            "the seven loss components of every step, and the speed.\n"
            "\n"
            "options:\n"
            "  --preset NAME       model preset: %s (default hepscore22)\n"
            "  --events N          training events (default 32)\n"
            "  --elements N        mean elements per event (default 5000; sizes vary\n"
            "                      from 0.8 N to 1.28 N, as in the Delphes dataset)\n"
            "  --batch-size B      events per training step (default 4)\n"
            "  --epochs E          passes over the training events (default 1)\n"
            "  --max-steps S       stop after S steps in total (default 0: no limit)\n"
            "  --seed S            seed of the initial weights and of the events (default 42)\n"
            "  --threads T         worker threads (default: every core available)\n"
            "  --lr X              learning rate (default: the preset's; hepscore22 1e-5)\n"
            "  -h, --help          this help\n",
            mlpf_config_preset_names());
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int parse(int argc, char **argv, train_opts *o)
{
    *o = (train_opts){.preset = "hepscore22", .events = 32, .elements = 5000, .batch_size = 4,
                      .epochs = 1, .max_steps = 0, .seed = 42, .threads = 0, .lr = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            exit(0);
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (!strcmp(a, "--preset")) {
            mlpf_config tmp;
            if (!v || mlpf_config_preset(v, &tmp) != 0) {
                fprintf(stderr, "mlpfbench: --preset must be one of %s, got '%s'\n",
                        mlpf_config_preset_names(), v ? v : "(nothing)");
                return -1;
            }
            o->preset = v;
            rc = 0;
        } else if (!strcmp(a, "--events")) rc = cli_int(a, v, 1, 100000000, &o->events);
        else if (!strcmp(a, "--elements")) rc = cli_int(a, v, 1, 1000000, &o->elements);
        else if (!strcmp(a, "--batch-size")) rc = cli_int(a, v, 1, 65536, &o->batch_size);
        else if (!strcmp(a, "--epochs")) rc = cli_int(a, v, 1, 1000000, &o->epochs);
        else if (!strcmp(a, "--max-steps")) rc = cli_int(a, v, 0, 1000000000, &o->max_steps);
        else if (!strcmp(a, "--seed")) rc = cli_int(a, v, 0, 1LL << 62, &o->seed);
        else if (!strcmp(a, "--threads")) rc = cli_int(a, v, 1, 4096, &o->threads);
        else if (!strcmp(a, "--lr")) rc = cli_double(a, v, 1e-12, 10.0, &o->lr);
        else {
            fprintf(stderr, "mlpfbench: unknown option '%s' for train (see --help)\n", a);
            return -1;
        }
        if (rc != 0) return -1;
        i++;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    train_opts o;
    if (parse(argc, argv, &o) != 0) return 2;
    if (o.threads > 0) {
        omp_set_num_threads((int)o.threads);
        openblas_set_num_threads((int)o.threads);
    }
    mlpf_config cfg;
    mlpf_config_preset(o.preset, &cfg);
    if (o.lr > 0) cfg.lr = (float)o.lr;

    gen_config gen = gen_config_default();
    gen.seed = (uint64_t)o.seed;
    gen.mean_elements = (int)o.elements;
    gen.min_elements = (int)(o.elements * 4 / 5) > 0 ? (int)(o.elements * 4 / 5) : 1;
    gen.max_elements = (int)(o.elements * 32 / 25) > gen.min_elements ? (int)(o.elements * 32 / 25)
                                                                      : gen.min_elements;

    mlpf_model m;
    if (model_create(&m, &cfg, (uint64_t)o.seed) != 0) return 1;
    adam_state opt;
    if (adam_init(&opt, m.layout.total) != 0) {
        fprintf(stderr, "mlpfbench: cannot allocate the optimizer state\n");
        return 1;
    }
    long long steps_per_epoch = (o.events + o.batch_size - 1) / o.batch_size;
    long long total_steps = steps_per_epoch * o.epochs;
    if (o.max_steps > 0 && o.max_steps < total_steps) total_steps = o.max_steps;
    printf("mlpfbench train: preset %s, %zu trainable parameters\n", cfg.preset, m.layout.total);
    printf("  %lld events of ~%lld elements, batch %lld, %lld epoch(s), %lld steps, %d threads, "
           "lr %g, seed %lld\n",
           o.events, o.elements, o.batch_size, o.epochs, total_steps, omp_get_max_threads(),
           cfg.lr, o.seed);
    fflush(stdout);

    int rc = 0;
    long long step = 0, events_done = 0;
    double t_start = now();
    for (long long ep = 0; ep < o.epochs && step < total_steps && rc == 0; ep++) {
        for (long long first = 0; first < o.events && step < total_steps; first += o.batch_size) {
            int n = (int)(first + o.batch_size <= o.events ? o.batch_size : o.events - first);
            mlpf_batch b;
            if (batch_generate(&b, &gen, (uint64_t)first, n) != 0) {
                fprintf(stderr, "mlpfbench: cannot allocate a batch of %d events\n", n);
                rc = 1;
                break;
            }
            double t0 = now();
            loss_report r;
            model_zero_grad(&m);
            if (model_forward(&m, &b, b.n_rows, &r) != 0) {
                batch_free(&b);
                rc = 1;
                break;
            }
            model_backward(&m, &b);
            adam_update(&cfg, &opt, m.params, m.grads);
            double dt = now() - t0;
            step++;
            events_done += n;
            printf("epoch %lld step %lld/%lld loss %.5f [", ep + 1, step, total_steps, r.loss[0]);
            for (int k = 1; k < LOSS_N; k++)
                printf("%s %.4g%s", LOSS_NAMES[k], r.loss[k], k + 1 < LOSS_N ? " " : "]");
            printf(" acc %.3f %.2f s %.2f ev/s\n", (double)r.n_correct / r.n_rows, dt, n / dt);
            fflush(stdout);
            batch_free(&b);
        }
    }
    double elapsed = now() - t_start;
    if (rc == 0)
        printf("done: %lld steps, %lld events in %.1f s, %.3f events/s, activations %.0f MiB\n",
               step, events_done, elapsed, events_done / elapsed,
               model_activation_bytes(&m) / 1048576.0);
    adam_free(&opt);
    model_free(&m);
    return rc;
}
