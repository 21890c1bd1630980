/* Helpers of the hep-workloads entry point scripts/mlpf-bmk.sh (internal
 * commands, no MPI, see docs/hepscore.md):
 *
 *   mlpfbench __bmk-check [--data DIR] -- TRAIN_ARGS...
 *       checks the `train` options with train's own parser, and prints what
 *       the entry point plans with (key=value lines): the CPUs this process
 *       may run on, the dataset's event counts, the GPUs visible for
 *       --device cuda. Exit 0; 2 for a bad option or dataset (one line on
 *       stderr); 3 when --device cuda finds no usable GPU (a run failure, not
 *       a usage error).
 *   mlpfbench __bmk-subset SRC DST NTRAIN NVALID
 *       a dataset DST holding the first NTRAIN training and NVALID validation
 *       events of SRC: whole shards are symbolic links to SRC's, the last
 *       partial shard of a split is rewritten (after checking SRC's CRC-32).
 *   mlpfbench __bmk-merge --out DIR [options] [--copy PROC_DIR RC CPUS GPUS]... -- TRAIN_ARGS...
 *       (options: --copies --threads --events --valid-events --ranks --gpus
 *       --extra-args --data --view --containment --command-line --fail
 *       --first-failed K: copy K failed first, its error is the run's)
 *       the summary of C copies, DIR/mlpf_summary.json: scores summed (the
 *       throughput) or averaged (the epoch time) over the copies, each copy's
 *       figures under wl-stats.copies, or a failed summary naming the first
 *       copy that failed. Exit 0 when every copy succeeded with a score, else 1.
 */

#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <mpi.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "gpu.h"
#include "report.h"

int train_check_options(int argc, char **argv);

static int bmk_error(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bmk_error(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mlpfbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return rc;
}

/* The manifest of a dataset directory, checked for format and version. */
static json_t *load_manifest(const char *dir, char *err, size_t n)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, n, "%s is not a directory", dir);
        return NULL;
    }
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!m) {
        snprintf(err, n, "no dataset in %s: cannot read %s (%s)", dir, path, je.text);
        return NULL;
    }
    const char *fmt = json_string_value(json_object_get(m, "format"));
    json_t *ver = json_object_get(m, "version");
    if (!fmt || strcmp(fmt, DATASET_FORMAT) || !json_is_integer(ver) || json_integer_value(ver) != SHARD_VERSION) {
        snprintf(err, n, "%s is not an %s version %d manifest", path, DATASET_FORMAT, SHARD_VERSION);
        json_decref(m);
        return NULL;
    }
    for (int s = 0; s < 2; s++) {
        json_t *sp = json_object_get(m, s ? "valid" : "train");
        if (!json_is_integer(json_object_get(sp, "events")) || !json_is_array(json_object_get(sp, "shards"))) {
            snprintf(err, n, "%s has no '%s' split", path, s ? "valid" : "train");
            json_decref(m);
            return NULL;
        }
    }
    return m;
}

static long long split_events(const json_t *m, const char *split)
{
    return (long long)json_integer_value(json_object_get(json_object_get(m, split), "events"));
}

/* ------------------------------------------------------------------ check */

static int cmd_check(int argc, char **argv)
{
    const char *data = NULL;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else return bmk_error(2, "__bmk-check: unknown option '%s'", argv[i]);
    }
    int targc = i < argc ? argc - i : 1; /* argv[i] = "--" stands in for "train" */
    char **targv = i < argc ? argv + i : (char *[]){"train", NULL};
    const char *device = "cpu";
    for (int k = 1; k + 1 < targc; k++)
        if (!strcmp(targv[k], "--device")) device = targv[k + 1];
    /* train's parser prints one line naming the option it refuses */
    if (strcmp(device, "cuda") != 0 && train_check_options(targc, targv) != 0) return 2;
    if (!strcmp(device, "cuda")) {
        char err[512] = "";
        int n = gpu_device_count(err, sizeof err);
        if (n <= 0)
            return bmk_error(3, "--device cuda: no GPU is visible to this process: %s",
                             n == 0 ? "the CUDA runtime found no device" : err);
        if (train_check_options(targc, targv) != 0) return 2;
        printf("gpus=%d\n", n);
    }
    if (data) {
        char err[PATH_MAX + 256];
        json_t *m = load_manifest(data, err, sizeof err);
        if (!m) return bmk_error(2, "--data %s: %s", data, err);
        printf("train_events=%lld\nvalid_events=%lld\n", split_events(m, "train"), split_events(m, "valid"));
        json_decref(m);
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return bmk_error(1, "cannot read this process's CPU affinity: %s", strerror(errno));
    printf("cpus=");
    for (int c = 0, first = 1; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) {
            printf(first ? "%d" : " %d", c);
            first = 0;
        }
    printf("\n");
    return 0;
}

/* ----------------------------------------------------------------- subset */

typedef struct {
    hid_t dst;
    int rc;
} attr_copy;

static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *arg)
{
    (void)info;
    attr_copy *c = arg;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT), type = H5Aget_type(a), space = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    int vlen = H5Tis_variable_str(type) > 0;
    size_t bytes = (vlen ? sizeof(char *) : H5Tget_size(type)) * (size_t)(n > 0 ? n : 1);
    void *buf = calloc(1, bytes);
    hid_t b = -1;
    if (a < 0 || type < 0 || space < 0 || !buf || H5Aread(a, type, buf) < 0 ||
        (b = H5Acreate2(c->dst, name, type, space, H5P_DEFAULT, H5P_DEFAULT)) < 0 || H5Awrite(b, type, buf) < 0)
        c->rc = -1;
    if (vlen && buf) H5Dvlen_reclaim(type, space, H5P_DEFAULT, buf);
    free(buf);
    if (b >= 0) H5Aclose(b);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    return c->rc == 0 ? 0 : -1;
}

/* Rows [0, rows) of a 1- or 2-dimensional dataset, read as `mem` (float or int64). */
static void *read_rows(hid_t f, const char *name, hid_t mem, int64_t rows, hsize_t *cols)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) return NULL;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 1};
    int rank = H5Sget_simple_extent_ndims(sp);
    void *buf = NULL;
    if ((rank == 1 || rank == 2) && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0 && dims[0] >= (hsize_t)rows) {
        if (rank == 1) dims[1] = 1;
        *cols = dims[1];
        hsize_t start[2] = {0, 0}, count[2] = {(hsize_t)rows, dims[1]};
        buf = malloc(H5Tget_size(mem) * (size_t)(rows ? rows : 1) * dims[1]);
        hid_t ms = H5Screate_simple(rank, count, NULL);
        if (!buf || (rows > 0 && (H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
                                  H5Dread(d, mem, ms, sp, H5P_DEFAULT, buf) < 0))) {
            free(buf);
            buf = NULL;
        }
        H5Sclose(ms);
    }
    H5Sclose(sp);
    H5Dclose(d);
    return buf;
}

/* A shard holding the first n events of shard `from`, written as the
 * generator writes shards (contiguous, no time stamps: same input, same bytes). */
static int write_partial_shard(const char *from, const char *to, int64_t n, int64_t *elements)
{
    hid_t in = H5Fopen(from, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (in < 0) return bmk_error(-1, "cannot open %s", from);
    hsize_t one;
    int64_t *off = read_rows(in, "offsets", H5T_NATIVE_INT64, n + 1, &one);
    int rc = off && off[0] == 0 && off[n] >= 0 ? 0 : -1;
    int64_t rows = rc == 0 ? off[n] : 0;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t out = rc == 0 ? H5Fcreate(to, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT) : -1;
    if (out < 0) rc = -1;
    const char *names[4] = {"X", "ygen", "ycand", "offsets"};
    for (int k = 0; k < 4 && rc == 0; k++) {
        if (k == 2 && H5Lexists(in, "ycand", H5P_DEFAULT) <= 0) continue; /* optional */
        int ints = k == 3;
        hsize_t cols = 1;
        void *buf = ints ? (void *)off : read_rows(in, names[k], H5T_NATIVE_FLOAT, rows, &cols);
        if (!buf) {
            rc = -1;
            break;
        }
        hsize_t d[2] = {ints ? (hsize_t)n + 1 : (hsize_t)rows, cols};
        hid_t sp = H5Screate_simple(ints ? 1 : 2, d, NULL);
        hid_t ds = H5Dcreate2(out, names[k], ints ? H5T_STD_I64LE : H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds < 0 || H5Dwrite(ds, ints ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            rc = -1;
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(sp);
        if (!ints) free(buf);
    }
    if (rc == 0) {
        attr_copy c = {.dst = out, .rc = 0};
        hsize_t idx = 0;
        if (H5Aiterate2(in, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_attr, &c) < 0 || c.rc != 0) rc = -1;
    }
    if (out >= 0 && H5Fclose(out) < 0) rc = -1;
    H5Fclose(in);
    H5Pclose(fcpl);
    H5Pclose(dcpl);
    free(off);
    *elements = rows;
    if (rc != 0) return bmk_error(-1, "cannot write %s from the first %lld events of %s", to, (long long)n, from);
    return 0;
}

static int subset_split(const char *src, const char *tmp, json_t *m, const char *split, long long want,
                        json_t *out_manifest)
{
    json_t *shards = json_object_get(json_object_get(m, split), "shards"), *list = json_array();
    json_t *sp = json_object();
    json_object_set_new(sp, "events", json_integer(want));
    json_object_set_new(sp, "shards", list);
    json_object_set(out_manifest, split, sp);
    json_decref(sp);
    long long left = want, elements = 0;
    char dir[PATH_MAX + 64];
    snprintf(dir, sizeof dir, "%s/%s", tmp, split);
    if (mkdir(dir, 0755) != 0) return bmk_error(-1, "cannot create %s: %s", dir, strerror(errno));
    for (size_t i = 0; i < json_array_size(shards) && left > 0; i++) {
        json_t *s = json_array_get(shards, i);
        const char *file = json_string_value(json_object_get(s, "file"));
        const char *crc = json_string_value(json_object_get(s, "crc32"));
        long long ev = (long long)json_integer_value(json_object_get(s, "events"));
        if (!file || !crc || strstr(file, "..") || strchr(file, '/') != file + strlen(split) ||
            strncmp(file, split, strlen(split)))
            return bmk_error(-1, "%s/manifest.json: '%s' shard %zu is malformed", src, split, i);
        char from[PATH_MAX + 300], to[PATH_MAX + 300];
        snprintf(from, sizeof from, "%s/%s", src, file);
        if (ev <= left) { /* the whole shard: a link, the manifest entry as it is */
            snprintf(to, sizeof to, "%s/%s", tmp, file);
            if (symlink(from, to) != 0) return bmk_error(-1, "cannot link %s to %s: %s", to, from, strerror(errno));
            json_array_append(list, s);
            elements += json_integer_value(json_object_get(s, "elements"));
            left -= ev;
            continue;
        }
        /* the first `left` events of this shard, from a checked copy */
        int64_t bytes;
        uint32_t have = file_crc32(from, &bytes);
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", have);
        if (bytes != json_integer_value(json_object_get(s, "bytes")) || strcmp(hex, crc))
            return bmk_error(-1, "shard %s is damaged (size %lld, CRC-32 %s; the manifest says %lld, %s)", from,
                             (long long)bytes, hex, (long long)json_integer_value(json_object_get(s, "bytes")), crc);
        char name[400];
        snprintf(name, sizeof name, "%.*s-first-%lld.h5", (int)(strlen(file) - 3), file, left);
        snprintf(to, sizeof to, "%s/%s", tmp, name);
        int64_t el = 0;
        if (write_partial_shard(from, to, left, &el) != 0) return -1;
        have = file_crc32(to, &bytes);
        snprintf(hex, sizeof hex, "%08x", have);
        json_t *e = json_object();
        json_object_set_new(e, "file", json_string(name));
        json_object_set_new(e, "events", json_integer(left));
        json_object_set_new(e, "elements", json_integer(el));
        json_object_set_new(e, "bytes", json_integer(bytes));
        json_object_set_new(e, "crc32", json_string(hex));
        json_array_append_new(list, e);
        elements += el;
        left = 0;
    }
    if (left > 0)
        return bmk_error(-1, "%s has %lld %s events, fewer than the %lld asked for", src, split_events(m, split),
                         strcmp(split, "train") ? "validation" : "training", want);
    json_object_set_new(json_object_get(out_manifest, split), "elements", json_integer(elements));
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Remove a directory tree; links are removed, never followed. */
static int remove_tree(const char *path) { return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int cmd_subset(int argc, char **argv)
{
    if (argc != 5) return bmk_error(2, "usage: mlpfbench __bmk-subset SRC DST NTRAIN NVALID");
    char src[PATH_MAX], err[PATH_MAX + 256];
    if (!realpath(argv[1], src)) return bmk_error(2, "--data %s: %s", argv[1], strerror(errno));
    long long want[2];
    for (int s = 0; s < 2; s++) {
        char *end;
        want[s] = strtoll(argv[3 + s], &end, 10);
        if (*end || want[s] < 1) return bmk_error(2, "__bmk-subset: bad event count '%s'", argv[3 + s]);
    }
    json_t *m = load_manifest(src, err, sizeof err);
    if (!m) return bmk_error(2, "--data %s: %s", argv[1], err);
    const char *dst = argv[2];
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    struct stat st;
    if (stat(dst, &st) == 0 || stat(tmp, &st) == 0) {
        json_decref(m);
        return bmk_error(1, "%s already exists", stat(dst, &st) == 0 ? dst : tmp);
    }
    if (mkdir(tmp, 0755) != 0) {
        json_decref(m);
        return bmk_error(1, "cannot create %s: %s", tmp, strerror(errno));
    }
    json_t *out = json_object();
    json_object_set_new(out, "format", json_string(DATASET_FORMAT));
    json_object_set_new(out, "version", json_integer(SHARD_VERSION));
    char source[PATH_MAX + 600];
    snprintf(source, sizeof source, "%s; the first %lld training and %lld validation events of %s",
             json_string_value(json_object_get(m, "source")) ? json_string_value(json_object_get(m, "source")) : "?",
             want[0], want[1], src);
    json_object_set_new(out, "source", json_string(source));
    int rc = subset_split(src, tmp, m, "train", want[0], out);
    if (rc == 0) rc = subset_split(src, tmp, m, "valid", want[1], out);
    char mpath[PATH_MAX + 32];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", tmp);
    if (rc == 0 && json_dump_file(out, mpath, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
        rc = bmk_error(-1, "cannot write %s", mpath);
    if (rc == 0 && rename(tmp, dst) != 0) rc = bmk_error(-1, "cannot rename %s to %s: %s", tmp, dst, strerror(errno));
    json_decref(out);
    json_decref(m);
    if (rc != 0) {
        remove_tree(tmp);
        return 1;
    }
    printf("subset: %s: the first %lld training and %lld validation events of %s\n", dst, want[0], want[1], src);
    return 0;
}

/* ------------------------------------------------------------------ merge */

typedef struct {
    const char *dir, *cpus, *gpus;
    int rc;
    json_t *sum; /* the copy's mlpf_summary.json, NULL if none */
    char why[1200];  /* empty when the copy succeeded with a score */
} copy_t;

static double num(const json_t *o, const char *key) { return json_number_value(json_object_get(o, key)); }

/* The value after the last occurrence of an option among the train options. */
static const char *last_opt(int argc, char **argv, const char *opt, const char *dflt)
{
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], opt)) dflt = argv[i + 1];
    return dflt;
}

/* wl-stats of a run of which no copy left a summary: every field the schema
 * asks for, empty, with the launch as far as it is known. */
static json_t *empty_stats(int targc, char **targv)
{
    json_t *s = json_object(), *vl = json_object();
    char cpu[256];
    report_cpu_model(cpu, sizeof cpu);
    long long batch = strtoll(last_opt(targc, targv, "--batch-size", "4"), NULL, 10);
    const char *names[] = {"total", "cls", "charge", "pt", "eta", "sin_phi", "cos_phi", "energy"};
    for (int k = 0; k < 8; k++) json_object_set_new(vl, names[k], json_array());
    json_object_set_new(s, "num_epochs", json_integer(0));
    json_object_set_new(s, "epoch_times", json_array());
    json_object_set_new(s, "throughput_per_epoch", json_array());
    json_object_set_new(s, "train_start", json_string(""));
    json_object_set_new(s, "train_stop", json_string(""));
    json_object_set_new(s, "train_time", json_real(0));
    json_object_set_new(s, "GPU", json_string("none"));
    json_object_set_new(s, "CPU", json_string(cpu));
    json_object_set_new(s, "train_set_size", json_integer(0));
    json_object_set_new(s, "batch_size_per_device", json_integer(batch > 0 ? batch : 1));
    json_object_set_new(s, "batch_size_total", json_integer(batch > 0 ? batch : 1));
    json_object_set_new(s, "steps_per_epoch", json_integer(0));
    json_object_set_new(s, "events_per_epoch", json_integer(0));
    json_object_set_new(s, "horovod_enabled", json_false());
    json_object_set_new(s, "validation_accuracy", json_array());
    json_object_set_new(s, "validation_loss", vl);
    json_object_set_new(s, "world_size", json_integer(1));
    json_object_set_new(s, "nodes", json_integer(1));
    json_object_set_new(s, "ranks_per_node", json_integer(0));
    const char *dev = last_opt(targc, targv, "--device", "cpu"), *prec = last_opt(targc, targv, "--precision", "fp32");
    json_object_set_new(s, "device", json_string(strcmp(dev, "cuda") ? "cpu" : "cuda"));
    json_object_set_new(s, "precision", json_string(!strcmp(prec, "tf32") || !strcmp(prec, "bf16") ? prec : "fp32"));
    json_object_set_new(s, "preset", json_string(last_opt(targc, targv, "--preset", "hepscore22")));
    json_object_set_new(s, "flops_per_event", json_real(0));
    json_object_set_new(s, "achieved_flops", json_real(0));
    json_object_set_new(s, "per_node", json_array());
    json_object_set_new(s, "per_rank", json_array());
    json_object_set_new(s, "software", report_software_json());
    return s;
}

/* count, sum, min, max, avg, median of one score over the copies (hep-workloads' wl-stats form) */
static json_t *score_stats(const copy_t *c, int n, const char *key)
{
    double v[n > 0 ? n : 1], sum = 0;
    for (int i = 0; i < n; i++) v[i] = num(json_object_get(json_object_get(c[i].sum, "report"), "wl-scores"), key);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of copies */
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    for (int i = 0; i < n; i++) sum += v[i];
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer(n));
    json_object_set_new(o, "sum", json_real(sum));
    json_object_set_new(o, "min", json_real(v[0]));
    json_object_set_new(o, "max", json_real(v[n - 1]));
    json_object_set_new(o, "avg", json_real(sum / n));
    json_object_set_new(o, "median", json_real(n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])));
    return o;
}

/* Per-epoch array `key` of wl-stats (or of wl-stats.validation_loss when
 * loss is set) summed (sum) or averaged over the copies. */
static json_t *per_epoch(const copy_t *c, int n, int epochs, const char *key, const char *loss, int sum)
{
    json_t *a = json_array();
    for (int e = 0; e < epochs; e++) {
        double t = 0;
        for (int i = 0; i < n; i++) {
            json_t *st = json_object_get(json_object_get(c[i].sum, "report"), "wl-stats");
            if (loss) st = json_object_get(st, "validation_loss");
            t += json_number_value(json_array_get(json_object_get(st, loss ? loss : key), e));
        }
        json_array_append_new(a, json_real(sum ? t : t / n));
    }
    return a;
}

/* The GPU figures of the ranks in per_rank (of one host when `host` is set):
 * the sums report.c writes per node and in all. */
typedef struct {
    int gpus, sampled, measured, counter;
    long long events; /* of the measured ranks */
    double joules, power_w;
} gpu_sums;

static gpu_sums sum_gpus(const json_t *per_rank, const char *host)
{
    gpu_sums g = {0};
    json_t *r;
    size_t j;
    json_array_foreach(per_rank, j, r) {
        json_t *nv = json_object_get(json_object_get(r, "gpu"), "nvml");
        const char *h = json_string_value(json_object_get(r, "host"));
        if (!json_object_get(r, "gpu") || (host && (!h || strcmp(h, host)))) continue;
        g.gpus++;
        if (!json_is_true(json_object_get(nv, "sampled"))) continue;
        g.sampled++;
        g.power_w += num(nv, "power_mean_w");
        if (!json_is_number(json_object_get(nv, "energy_j"))) continue;
        g.measured++;
        g.joules += num(nv, "energy_j");
        g.events += (long long)json_integer_value(json_object_get(r, "events"));
        const char *src = json_string_value(json_object_get(nv, "energy_source"));
        if (src && !strcmp(src, "energy counter")) g.counter++;
    }
    return g;
}

/* wl-stats.gpus and gpu_energy over the ranks of every copy, the copies'
 * notes kept ("copy K: ..."); the nodes' GPU figures recomputed. */
static void merge_gpus(json_t *s, copy_t *c, int n, const json_t *per_rank, json_t *nodes)
{
    json_t *x;
    size_t q;
    json_array_foreach(nodes, q, x) {
        gpu_sums g = sum_gpus(per_rank, json_string_value(json_object_get(x, "host")));
        json_object_set_new(x, "gpus", json_integer(g.gpus));
        if (g.measured) {
            json_object_set_new(x, "gpu_energy_j", json_real(g.joules));
            json_object_set_new(x, "gpu_energy_per_event_j", json_real(g.events > 0 ? g.joules / g.events : 0.0));
        }
        if (g.sampled) json_object_set_new(x, "gpu_power_mean_w", json_real(g.power_w));
    }
    gpu_sums g = sum_gpus(per_rank, NULL);
    json_object_set_new(s, "gpus", json_integer(g.gpus));
    json_object_del(s, "gpu_energy");
    if (!g.gpus) return;
    json_t *e = json_object();
    char note[2048] = "";
    size_t len = 0;
    if (g.measured && g.measured < g.gpus)
        len += snprintf(note + len, sizeof note - len, "%d of %d GPU(s) measured", g.measured, g.gpus);
    for (int i = 0; i < n && len < sizeof note; i++) {
        const char *cn = json_string_value(json_object_get(
            json_object_get(json_object_get(json_object_get(c[i].sum, "report"), "wl-stats"), "gpu_energy"), "note"));
        if (cn && cn[0]) len += snprintf(note + len, sizeof note - len, "%scopy %d: %s", len ? "; " : "", i + 1, cn);
    }
    if (g.measured) {
        json_object_set_new(e, "joules", json_real(g.joules));
        json_object_set_new(e, "joules_per_event", json_real(g.events > 0 ? g.joules / g.events : 0.0));
        json_object_set_new(e, "gpus_measured", json_integer(g.measured));
        json_object_set_new(e, "source", json_string(g.counter == g.measured ? "energy counter"
                                                     : g.counter == 0         ? "integrated power"
                                                                              : "energy counter and integrated power"));
        json_object_set_new(e, "power_mean_w", json_real(g.power_w));
    }
    if (note[0] || !g.measured) json_object_set_new(e, "note", json_string(note[0] ? note : "not measured"));
    json_object_set_new(s, "gpu_energy", e);
}

/* Aggregate wl-stats of n successful copies of the same training: the first
 * copy's fields, with the per-epoch figures summed (throughput) or averaged
 * (times, validation), the ranks of every copy numbered through, and each
 * copy's own wl-stats under "copies". */
static json_t *merged_stats(copy_t *c, int n, int epochs)
{
    json_t *first = json_object_get(json_object_get(c[0].sum, "report"), "wl-stats");
    json_t *s = json_deep_copy(first);
    json_object_set_new(s, "epoch_times", per_epoch(c, n, epochs, "epoch_times", NULL, 0));
    json_object_set_new(s, "throughput_per_epoch", per_epoch(c, n, epochs, "throughput_per_epoch", NULL, 1));
    json_object_set_new(s, "validation_accuracy", per_epoch(c, n, epochs, "validation_accuracy", NULL, 0));
    json_t *vl = json_object(), *v0 = json_object_get(first, "validation_loss");
    const char *k;
    json_t *val;
    json_object_foreach(v0, k, val) json_object_set_new(vl, k, per_epoch(c, n, epochs, NULL, k, 0));
    json_object_set_new(s, "validation_loss", vl);
    const char *start = NULL, *stop = NULL;
    double train_time = 0, achieved = 0, fpe = 0;
    long long events = 0, world = 0;
    json_t *per_rank = json_array(), *nodes = json_array();
    for (int i = 0; i < n; i++) {
        json_t *st = json_object_get(json_object_get(c[i].sum, "report"), "wl-stats");
        const char *a = json_string_value(json_object_get(st, "train_start")),
                   *b = json_string_value(json_object_get(st, "train_stop"));
        if (a && (!start || strcmp(a, start) < 0)) start = a;
        if (b && (!stop || strcmp(b, stop) > 0)) stop = b;
        if (num(st, "train_time") > train_time) train_time = num(st, "train_time");
        achieved += num(st, "achieved_flops");
        fpe += num(st, "flops_per_event") / n;
        events += (long long)json_integer_value(json_object_get(st, "events_per_epoch"));
        json_t *r;
        size_t j;
        json_array_foreach(json_object_get(st, "per_rank"), j, r) {
            json_t *x = json_deep_copy(r);
            json_object_set_new(x, "copy", json_integer(i + 1));
            json_object_set_new(x, "copy_rank", json_object_get(r, "rank") ? json_incref(json_object_get(r, "rank")) : json_integer(0));
            json_object_set_new(x, "rank", json_integer(world + (long long)json_integer_value(json_object_get(r, "rank"))));
            json_array_append_new(per_rank, x);
        }
        world += (long long)json_integer_value(json_object_get(st, "world_size"));
    }
    /* per host: sums of events and throughput, means of the times over its ranks, summed memory */
    json_t *r;
    size_t j;
    json_array_foreach(per_rank, j, r) {
        const char *host = json_string_value(json_object_get(r, "host"));
        json_t *node = NULL, *x;
        size_t q;
        json_array_foreach(nodes, q, x) if (host && !strcmp(json_string_value(json_object_get(x, "host")), host)) node = x;
        if (!node) {
            node = json_object();
            json_object_set_new(node, "host", json_string(host ? host : "?"));
            json_object_set_new(node, "ranks", json_array());
            json_array_append_new(nodes, node);
        }
        json_array_append_new(json_object_get(node, "ranks"), json_incref(json_object_get(r, "rank")));
        const char *sums[] = {"events", "elements", "throughput", "peak_memory_mib"};
        for (int t = 0; t < 4; t++) {
            double v = num(node, sums[t]) + num(r, sums[t]);
            json_object_set_new(node, sums[t], t < 2 ? json_integer((long long)v) : json_real(v));
        }
        const char *means[][2] = {{"mean_step_time", "step_time"}, {"mean_forward_time", "forward_time"},
                                  {"mean_backward_time", "backward_time"},
                                  {"mean_allreduce_exposed_time", "allreduce_exposed_time"},
                                  {"mean_data_wait_time", "data_wait_time"}, {"mean_optimizer_time", "optimizer_time"}};
        for (int t = 0; t < 6; t++) /* running sums, divided below */
            json_object_set_new(node, means[t][0], json_real(num(node, means[t][0]) + num(r, means[t][1])));
    }
    json_t *x;
    size_t q;
    int max_per_node = 0;
    json_array_foreach(nodes, q, x) {
        int nr = (int)json_array_size(json_object_get(x, "ranks"));
        if (nr > max_per_node) max_per_node = nr;
        const char *k2;
        json_t *v2;
        json_object_foreach(x, k2, v2) if (!strncmp(k2, "mean_", 5)) json_real_set(v2, json_real_value(v2) / nr);
    }
    json_object_set_new(s, "train_start", json_string(start ? start : ""));
    json_object_set_new(s, "train_stop", json_string(stop ? stop : ""));
    json_object_set_new(s, "train_time", json_real(train_time));
    json_object_set_new(s, "events_per_epoch", json_integer(events));
    json_object_set_new(s, "world_size", json_integer(world));
    json_object_set_new(s, "nodes", json_integer((json_int_t)json_array_size(nodes)));
    json_object_set_new(s, "ranks_per_node", json_integer(max_per_node));
    json_object_set_new(s, "achieved_flops", json_real(achieved));
    json_object_set_new(s, "flops_per_event", json_real(fpe));
    merge_gpus(s, c, n, per_rank, nodes);
    json_object_set_new(s, "per_node", nodes);
    json_object_set_new(s, "per_rank", per_rank);
    json_object_set_new(s, "mean_throughput", score_stats(c, n, "mean_throughput"));
    if (json_object_get(json_object_get(json_object_get(c[0].sum, "report"), "wl-scores"), "mean_epoch_time"))
        json_object_set_new(s, "mean_epoch_time", score_stats(c, n, "mean_epoch_time"));
    return s;
}

/* app.dataset: the dataset the copies trained on, with its checksums. */
static json_t *dataset_json(const char *dir, long long used_train, long long used_valid)
{
    json_t *d = json_object();
    char err[PATH_MAX + 256], real[PATH_MAX];
    json_t *m = dir ? load_manifest(dir, err, sizeof err) : NULL;
    json_object_set_new(d, "path", json_string(dir ? (realpath(dir, real) ? real : dir) : ""));
    if (!m) {
        json_object_set_new(d, "error", json_string(dir ? err : "no dataset given"));
        return d;
    }
    char mpath[PATH_MAX + 32], hex[16];
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    int64_t bytes;
    snprintf(hex, sizeof hex, "%08x", file_crc32(mpath, &bytes));
    json_object_set(d, "source", json_object_get(m, "source"));
    json_object_set_new(d, "manifest_crc32", json_string(hex));
    json_object_set_new(d, "train_events", json_integer(split_events(m, "train")));
    json_object_set_new(d, "valid_events", json_integer(split_events(m, "valid")));
    json_object_set_new(d, "used_train_events", json_integer(used_train));
    json_object_set_new(d, "used_valid_events", json_integer(used_valid));
    json_t *list = json_array();
    for (int s = 0; s < 2; s++) {
        json_t *sh;
        size_t i;
        json_array_foreach(json_object_get(json_object_get(m, s ? "valid" : "train"), "shards"), i, sh) {
            json_t *e = json_object();
            const char *keys[] = {"file", "events", "bytes", "crc32"};
            for (int k = 0; k < 4; k++) json_object_set(e, keys[k], json_object_get(sh, keys[k]));
            json_array_append_new(list, e);
        }
    }
    json_object_set_new(d, "shards", list);
    json_decref(m);
    return d;
}

/* Replace every "FROM/" in s by "TO/". */
static void replace_prefix(char *s, size_t n, const char *from, const char *to)
{
    char pat[PATH_MAX + 2], rep[PATH_MAX + 2], *out = malloc(n);
    if (!out) return;
    snprintf(pat, sizeof pat, "%s/", from);
    snprintf(rep, sizeof rep, "%s/", to);
    size_t o = 0, lp = strlen(pat), lr = strlen(rep);
    for (const char *p = s; *p && o + 1 < n;) {
        if (!strncmp(p, pat, lp) && o + lr + 1 < n) {
            memcpy(out + o, rep, lr);
            o += lr, p += lp;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    memcpy(s, out, o + 1);
    free(out);
}

static int cmd_merge(int argc, char **argv)
{
    const char *out = NULL, *extra = "", *data = NULL, *containment = "none", *cmdline = NULL, *fail = NULL,
               *view = NULL;
    long long copies = 0, threads = 0, events = 0, valid_events = 0, gpus = 0, ranks = 1, first_failed = 0;
    copy_t *c = calloc((size_t)argc, sizeof *c); /* at most one copy per 5 arguments */
    int n = 0, i = 1;
    if (!c) return bmk_error(1, "out of memory");
    for (; i < argc && strcmp(argv[i], "--"); i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return bmk_error(2, "__bmk-merge: %s needs a value", a);
        if (!strcmp(a, "--copy")) {
            if (i + 4 >= argc) return bmk_error(2, "__bmk-merge: --copy DIR RC CPUS GPUS");
            c[n] = (copy_t){.dir = argv[i + 1], .rc = atoi(argv[i + 2]), .cpus = argv[i + 3], .gpus = argv[i + 4]};
            n++;
            i += 4;
            continue;
        }
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--extra-args")) extra = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--view")) view = v;
        else if (!strcmp(a, "--containment")) containment = v;
        else if (!strcmp(a, "--command-line")) cmdline = v;
        else if (!strcmp(a, "--fail")) fail = *v ? v : NULL;
        else if (!strcmp(a, "--copies")) copies = atoll(v);
        else if (!strcmp(a, "--threads")) threads = atoll(v);
        else if (!strcmp(a, "--events")) events = atoll(v);
        else if (!strcmp(a, "--valid-events")) valid_events = atoll(v);
        else if (!strcmp(a, "--gpus")) gpus = atoll(v);
        else if (!strcmp(a, "--ranks")) ranks = atoll(v);
        else if (!strcmp(a, "--first-failed")) first_failed = atoll(v);
        else return bmk_error(2, "__bmk-merge: unknown option '%s'", a);
        i++;
    }
    if (!out || copies < 1) return bmk_error(2, "__bmk-merge needs --out DIR and --copies C");
    int targc = i < argc ? argc - i - 1 : 0;
    char **targv = argv + (i < argc ? i + 1 : argc);

    /* every copy: its summary and whether it succeeded with a score */
    const char *why = fail;
    int failed = 0;
    for (int k = 0; k < n; k++) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/mlpf_summary.json", c[k].dir);
        c[k].sum = json_load_file(path, 0, NULL);
        json_t *rep = json_object_get(c[k].sum, "report");
        const char *log = json_string_value(json_object_get(rep, "log"));
        json_t *sc = json_object_get(rep, "wl-scores");
        if (!c[k].sum || !log)
            snprintf(c[k].why, sizeof c[k].why, "copy %d wrote no summary (exit status %d; see %s/train.log)", k + 1,
                     c[k].rc, c[k].dir);
        else if (strcmp(log, "ok"))
            snprintf(c[k].why, sizeof c[k].why, "copy %d failed: %s", k + 1, log);
        else if (c[k].rc != 0)
            snprintf(c[k].why, sizeof c[k].why, "copy %d exited with status %d (see %s/train.log)", k + 1, c[k].rc, c[k].dir);
        else if (!json_is_number(json_object_get(sc, "mean_throughput"))) {
            const char *note = json_string_value(json_object_get(json_object_get(rep, "wl-stats"), "note"));
            snprintf(c[k].why, sizeof c[k].why, "copy %d succeeded but reported no mean_throughput (%s)", k + 1,
                     note ? note : "wl-scores is empty");
        }
        if (view && data && c[k].why[0]) /* name the dataset's files, not the links of the (removed) view */
            replace_prefix(c[k].why, sizeof c[k].why, view, data);
        if (c[k].why[0]) {
            failed++;
            if (!why) why = c[k].why;
        }
    }
    /* the copy that failed first names the cause (the others were stopped after it) */
    if (!fail && first_failed >= 1 && first_failed <= n && c[first_failed - 1].why[0]) why = c[first_failed - 1].why;
    int epochs = n > 0 ? (int)json_integer_value(json_object_get(json_object_get(json_object_get(c[0].sum, "report"), "wl-stats"), "num_epochs")) : 0;
    for (int k = 1; k < n && !why; k++)
        if (json_integer_value(json_object_get(json_object_get(json_object_get(c[k].sum, "report"), "wl-stats"), "num_epochs")) != epochs)
            why = "the copies trained different numbers of epochs";
    if (!why && n != copies) why = "fewer copies ran than were asked for";
    char whybuf[1400];
    if (why && failed > 1 && !fail) {
        snprintf(whybuf, sizeof whybuf, "%s (%d of the %d copies failed%s)", why, failed, n,
                 first_failed ? " or were stopped after it" : "");
        why = whybuf;
    }

    json_t *root = json_object(), *run_info = json_object(), *report = json_object(), *scores = json_object(),
           *app = json_object(), *stats;
    json_object_set_new(run_info, "copies", json_integer(copies));
    json_object_set_new(run_info, "threads_per_copy", json_integer(threads));
    json_object_set_new(run_info, "events_per_thread", json_integer(events)); /* hep-workloads' name for -e */
    json_object_set_new(run_info, "events_per_copy", json_integer(events));
    json_object_set_new(run_info, "valid_events_per_copy", json_integer(valid_events));
    json_object_set_new(run_info, "ranks_per_copy", json_integer(ranks));
    json_object_set_new(run_info, "gpus_per_copy", json_integer(gpus));
    json_object_set_new(run_info, "extra_arguments", json_string(extra));
    if (!why) {
        stats = merged_stats(c, n, epochs);
        json_t *sc0 = json_object_get(json_object_get(c[0].sum, "report"), "wl-scores");
        const char *key;
        json_t *val;
        json_object_foreach(sc0, key, val) {
            double t = 0;
            for (int k = 0; k < n; k++)
                t += num(json_object_get(json_object_get(c[k].sum, "report"), "wl-scores"), key);
            /* throughputs add up over copies running at once; times do not */
            json_object_set_new(scores, key, json_real(strstr(key, "throughput") ? t : t / n));
        }
    } else {
        int any = -1;
        for (int k = 0; k < n && any < 0; k++)
            if (json_object_get(json_object_get(c[k].sum, "report"), "wl-stats")) any = k;
        stats = any >= 0 ? json_deep_copy(json_object_get(json_object_get(c[any].sum, "report"), "wl-stats"))
                         : empty_stats(targc, targv);
    }
    json_t *list = json_array();
    for (int k = 0; k < n; k++) {
        json_t *o = json_object(), *rep = json_object_get(c[k].sum, "report");
        const char *slash = strrchr(c[k].dir, '/');
        json_object_set_new(o, "copy", json_integer(k + 1));
        json_object_set_new(o, "dir", json_string(slash ? slash + 1 : c[k].dir));
        json_object_set_new(o, "cpus", json_string(c[k].cpus));
        json_object_set_new(o, "gpus", json_string(c[k].gpus));
        json_object_set_new(o, "exit_status", json_integer(c[k].rc));
        json_object_set_new(o, "log", json_string(c[k].why[0] ? c[k].why : "ok"));
        json_t *ws = json_object_get(rep, "wl-scores");
        json_object_set_new(o, "wl-scores", ws ? json_incref(ws) : json_object());
        if (json_object_get(rep, "wl-stats")) json_object_set(o, "wl-stats", json_object_get(rep, "wl-stats"));
        json_array_append_new(list, o);
    }
    json_object_set_new(stats, "copies", list);
    if ((cmdline && *cmdline) || !json_object_get(stats, "command_line"))
        json_object_set_new(stats, "command_line", json_string(cmdline && *cmdline ? cmdline : "mlpf-bmk.sh"));
    json_object_set_new(report, "wl-scores", scores);
    json_object_set_new(report, "wl-stats", stats);
    json_object_set_new(report, "log", json_string(why ? why : "ok"));
    json_object_set_new(app, "version", json_string(MLPF_VERSION));
    char desc[256];
    snprintf(desc, sizeof desc, "mlpf-bmk: MLPF (%s) training benchmark, mlpfbench %s",
             last_opt(targc, targv, "--preset", "hepscore22"), MLPF_VERSION);
    json_object_set_new(app, "description", json_string(desc));
    json_object_set_new(app, "containment", json_string(containment));
    json_object_set_new(app, "dataset", dataset_json(data, events, valid_events));
    const char *info = getenv("MLPF_BMK_IMAGE_INFO");
    json_t *image = info ? json_load_file(info, 0, NULL) : NULL;
    if (image) json_object_set_new(app, "image", image);
    json_object_set_new(root, "run_info", run_info);
    json_object_set_new(root, "report", report);
    json_object_set_new(root, "app", app);

    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/mlpf_summary.json", out);
    int rc = report_json_file(root, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (rc == 0 && !why) {
        printf("mlpf-bmk: %lld cop%s: mean_throughput %.4f events/s", copies, copies > 1 ? "ies" : "y",
               num(scores, "mean_throughput"));
        if (copies > 1) {
            printf(" (");
            for (int k = 0; k < n; k++)
                printf("%s%.4f", k ? " + " : "", num(json_object_get(json_object_get(c[k].sum, "report"), "wl-scores"), "mean_throughput"));
            printf(")");
        }
        if (json_object_get(scores, "mean_epoch_time"))
            printf(", mean_epoch_time %.2f s", num(scores, "mean_epoch_time"));
        printf("\nmlpf-bmk: summary %s\n", path);
    } else if (rc == 0) {
        printf("mlpf-bmk: FAILED: %s\nmlpf-bmk: summary %s (failed)\n", why, path);
    }
    for (int k = 0; k < n; k++) json_decref(c[k].sum);
    free(c);
    json_decref(root);
    return rc != 0 || why ? 1 : 0;
}

int bmk_main(int argc, char **argv)
{
    const char *cmd = argv[1];
    if (!strcmp(cmd, "__bmk-check")) return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "__bmk-subset")) return cmd_subset(argc - 1, argv + 1);
    if (!strcmp(cmd, "__bmk-merge")) return cmd_merge(argc - 1, argv + 1);
    return bmk_error(2, "unknown command '%s'", cmd);
}
