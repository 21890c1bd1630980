/* Writes a parity fixture (docs/parity-fixture.md): weights, a batch of
 * generated events, and the loss, gradients, LSH buckets and a few Adam steps
 * computed by the C model, for scripts/torch_twin.py to check.
 *
 *   parity_dump --preset tiny --sizes 70,130 --out FILE [--seed S] [--adam-steps 3] [--lr 1e-3]
 *
 * The Adam run uses lr 1e-3 by default, not the preset's 1e-5: with 1e-5 the
 * weight changes after 3 steps are ~3e-5, and merely storing the weights in
 * float32 (spacing ~4e-9 near 0.05) would make them differ by ~1e-4. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "cli.h"
#include "generator.h"
#include "h5util.h"
#include "model.h"
#include "optim.h"

static void die(const char *msg)
{
    fprintf(stderr, "parity_dump: %s\n", msg);
    exit(2);
}

static void layer_name(const mlpf_config *c, int l, char *buf, size_t n)
{
    if (l < c->n_graph_id)
        snprintf(buf, n, "cg_id%d", l);
    else
        snprintf(buf, n, "cg_reg%d", l - c->n_graph_id);
}

static void write_params(hid_t f, const char *group, const param_layout *lay, const float *base)
{
    char path[256];
    for (int i = 0; i < lay->n; i++) {
        const tensor_info *t = &lay->t[i];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        int vec = t->rows == 1;
        if (h5_write(f, path, H5T_NATIVE_FLOAT, base + t->offset, vec ? t->cols : t->rows,
                     vec ? 0 : t->cols) != 0)
            die("HDF5 write failed");
    }
}

static void write_loss(hid_t f, const char *path, const loss_report *r, int n)
{
    double *v = malloc(sizeof(double) * LOSS_N * n);
    for (int s = 0; s < n; s++)
        for (int k = 0; k < LOSS_N; k++) v[s * LOSS_N + k] = r[s].loss[k];
    if (h5_write(f, path, H5T_NATIVE_DOUBLE, v, n == 1 ? LOSS_N : n, n == 1 ? 0 : LOSS_N) != 0)
        die("HDF5 write failed");
    free(v);
}

int main(int argc, char **argv)
{
    const char *preset = "tiny", *out = NULL, *sizes_arg = "70,130";
    uint64_t seed = 1;
    int steps = 3;
    double lr = 1e-3;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) die("every option takes a value");
        if (!strcmp(argv[i], "--preset")) preset = argv[++i];
        else if (!strcmp(argv[i], "--sizes")) sizes_arg = argv[++i];
        else if (!strcmp(argv[i], "--out")) out = argv[++i];
        else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--adam-steps")) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--lr")) lr = atof(argv[++i]);
        else die("unknown option");
    }
    if (!out) die("--out FILE is required");
    mlpf_config cfg;
    if (mlpf_config_preset(preset, &cfg) != 0) die("unknown preset");
    cfg.lr = (float)lr;

    int64_t sizes[64];
    int n_events = 0;
    char list[1024];
    snprintf(list, sizeof list, "%s", sizes_arg);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        long long v;
        if (n_events == 64 || cli_int("--sizes", tok, 1, 100000, &v) != 0) die("--sizes: 1 to 64 sizes of 1..100000");
        sizes[n_events++] = v;
    }
    if (n_events == 0) die("--sizes: at least one event");
    if (steps < 0) die("--adam-steps must be >= 0");
    mlpf_batch b;
    if (batch_alloc(&b, n_events, sizes) != 0) die("out of memory");
    for (int e = 0; e < n_events; e++) {
        gen_config g = gen_config_default();
        g.seed = seed;
        g.mean_elements = g.min_elements = g.max_elements = (int)sizes[e];
        gen_event(&g, (uint64_t)e, b.X + b.offsets[e] * BATCH_X_COLS, b.y + b.offsets[e] * BATCH_Y_COLS);
    }

    mlpf_model m;
    if (model_create(&m, &cfg, seed) != 0) die("cannot create the model");
    hid_t f = H5Fcreate(out, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) die("cannot create the output file");
    h5_attr_string(f, "preset", cfg.preset);
    h5_attr_int(f, "n_features", cfg.n_features);
    h5_attr_int(f, "n_types", cfg.n_types);
    h5_attr_int(f, "width", cfg.width);
    h5_attr_int(f, "n_graph_id", cfg.n_graph_id);
    h5_attr_int(f, "n_graph_reg", cfg.n_graph_reg);
    h5_attr_int(f, "bin_size", cfg.bin_size);
    h5_attr_int(f, "max_num_bins", cfg.max_num_bins);
    h5_attr_int(f, "dist_dim", cfg.dist_dim);
    h5_attr_int(f, "dist_hidden", cfg.dist_hidden);
    h5_attr_double(f, "dist_mult", cfg.dist_mult);
    h5_attr_int(f, "head_hidden", cfg.head_hidden);
    h5_attr_int(f, "n_classes", cfg.n_classes);
    h5_attr_int(f, "id_hidden_layers", cfg.id_hidden_layers);
    h5_attr_int(f, "ch_hidden_layers", cfg.ch_hidden_layers);
    h5_attr_int(f, "reg_hidden_layers", cfg.reg_hidden_layers);
    h5_attr_double(f, "ln_eps", cfg.ln_eps);
    h5_attr_int(f, "n_params", (long long)m.layout.total);

    write_params(f, "/params", &m.layout, m.params);
    int n_layers = cfg.n_graph_id + cfg.n_graph_reg;
    size_t per = (size_t)cfg.dist_dim * (cfg.max_num_bins / 2);
    char name[64], path[256];
    for (int l = 0; l < n_layers; l++) {
        layer_name(&cfg, l, name, sizeof name);
        snprintf(path, sizeof path, "/buffers/%s.R", name);
        if (h5_write(f, path, H5T_NATIVE_FLOAT, m.lsh + l * per, cfg.dist_dim, cfg.max_num_bins / 2) != 0)
            die("HDF5 write failed");
    }
    if (h5_write(f, "/batch/X", H5T_NATIVE_FLOAT, b.X, b.n_rows, BATCH_X_COLS) != 0 ||
        h5_write(f, "/batch/ygen", H5T_NATIVE_FLOAT, b.y, b.n_rows, BATCH_Y_COLS) != 0 ||
        h5_write(f, "/batch/offsets", H5T_NATIVE_INT64, b.offsets, n_events + 1, 0) != 0)
        die("HDF5 write failed");

    adam_state opt;
    if (adam_init(&opt, m.layout.total) != 0) die("out of memory");
    loss_report *hist = calloc(steps > 0 ? steps : 1, sizeof(loss_report));
    for (int s = 0; s < steps || s == 0; s++) {
        model_zero_grad(&m);
        if (model_forward(&m, &b, b.n_rows, &hist[s]) != 0) die("forward failed");
        model_backward(&m, &b);
        if (s == 0) {
            write_loss(f, "/c/loss", &hist[0], 1);
            write_params(f, "/c/grads", &m.layout, m.grads);
            for (int l = 0; l < n_layers; l++) {
                layer_name(&cfg, l, name, sizeof name);
                snprintf(path, sizeof path, "/c/hash/%s", name);
                if (h5_write(f, path, H5T_NATIVE_INT, model_hashes(&m, l), b.n_rows, 0) != 0)
                    die("HDF5 write failed");
            }
            printf("loss %.8g (", hist[0].loss[0]);
            for (int k = 1; k < LOSS_N; k++) printf("%s %.6g%s", LOSS_NAMES[k], hist[0].loss[k], k + 1 < LOSS_N ? ", " : ")\n");
        }
        if (steps == 0) break;
        adam_update(&cfg, &opt, m.params, m.grads);
    }
    if (steps > 0) {
        write_loss(f, "/c/adam/loss", hist, steps);
        write_params(f, "/c/adam/params", &m.layout, m.params);
        hid_t g = H5Gopen2(f, "/c/adam", H5P_DEFAULT);
        h5_attr_double(g, "lr", cfg.lr);
        h5_attr_double(g, "beta1", cfg.beta1);
        h5_attr_double(g, "beta2", cfg.beta2);
        h5_attr_double(g, "eps", cfg.adam_eps);
        h5_attr_double(g, "decay_rate", cfg.decay_rate);
        h5_attr_int(g, "decay_steps", cfg.decay_steps);
        h5_attr_int(g, "steps", steps);
        H5Gclose(g);
    }
    H5Fclose(f);
    printf("wrote %s: preset %s, %lld parameters, %d events, %lld rows\n", out, cfg.preset,
           (long long)m.layout.total, n_events, (long long)b.n_rows);
    free(hist);
    adam_free(&opt);
    model_free(&m);
    batch_free(&b);
    return 0;
}
