#define _XOPEN_SOURCE 700
#include "dataset.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "failpoint.h"
#include "h5util.h"
#include "mpictx.h"

static const char *FEATURE_NAMES = /* the same in scripts/convert_delphes.py */
    "type,pt_et,eta,sin_phi,cos_phi,p_e,eta_outer_e_em,sin_phi_outer_e_had,cos_phi_outer,charge,"
    "is_gen_muon,is_gen_electron";
static const char *TARGET_NAMES = "class,charge,pt,eta,sin_phi,cos_phi,energy";

uint32_t file_crc32(const char *path, int64_t *size)
{
    *size = -1;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static __thread unsigned char buf[1 << 20];
    uLong crc = crc32(0L, Z_NULL, 0);
    int64_t total = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        crc = crc32(crc, buf, (uInt)n);
        total += (int64_t)n;
    }
    int bad = ferror(f);
    fclose(f);
    if (!bad) *size = total;
    return (uint32_t)crc;
}

/* ------------------------------------------------------------------ writing */

static int write_shard(const char *path, const gen_config *gen, uint64_t first, int64_t n,
                       const char *source, int64_t *elements)
{
    int64_t *offsets = malloc(sizeof(int64_t) * (n + 1));
    offsets[0] = 0;
    for (int64_t e = 0; e < n; e++) offsets[e + 1] = offsets[e] + gen_event_size(gen, first + e);
    int64_t rows = offsets[n];
    float *X = malloc(sizeof(float) * BATCH_X_COLS * (rows ? rows : 1));
    float *Y = malloc(sizeof(float) * BATCH_Y_COLS * (rows ? rows : 1));
    if (!X || !Y) {
        mlpf_errorf("out of memory writing %s\n", path);
        free(offsets), free(X), free(Y);
        return -1;
    }
    for (int64_t e = 0; e < n; e++)
        gen_event(gen, first + e, X + offsets[e] * BATCH_X_COLS, Y + offsets[e] * BATCH_Y_COLS);
    /* no object time stamps anywhere: the same input gives the same bytes */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    int rc = f < 0 ? -1 : 0;
    struct { const char *name; hid_t type; const void *data; hsize_t d[2]; int rank; } ds[3] = {
        {"X", H5T_NATIVE_FLOAT, X, {(hsize_t)rows, BATCH_X_COLS}, 2},
        {"ygen", H5T_NATIVE_FLOAT, Y, {(hsize_t)rows, BATCH_Y_COLS}, 2},
        {"offsets", H5T_NATIVE_INT64, offsets, {(hsize_t)n + 1, 0}, 1},
    };
    for (int i = 0; i < 3 && rc == 0; i++) {
        hid_t sp = H5Screate_simple(ds[i].rank, ds[i].d, NULL);
        hid_t d = H5Dcreate2(f, ds[i].name, ds[i].type == H5T_NATIVE_INT64 ? H5T_STD_I64LE : H5T_IEEE_F32LE,
                             sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0 || H5Dwrite(d, ds[i].type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ds[i].data) < 0) rc = -1;
        if (d >= 0) H5Dclose(d);
        H5Sclose(sp);
    }
    if (rc == 0) {
        rc |= h5_attr_string(f, "format", SHARD_FORMAT);
        rc |= h5_attr_int(f, "version", SHARD_VERSION);
        rc |= h5_attr_string(f, "source", source);
        rc |= h5_attr_string(f, "feature_names", FEATURE_NAMES);
        rc |= h5_attr_string(f, "target_names", TARGET_NAMES);
    }
    if (f >= 0 && H5Fclose(f) < 0) rc = -1;
    H5Pclose(fcpl);
    H5Pclose(dcpl);
    if (rc != 0) mlpf_errorf("cannot write shard %s\n", path);
    *elements = rows;
    free(offsets), free(X), free(Y);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int remove_tree(const char *path) { return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

typedef struct {
    const char *split;
    uint64_t first_gen; /* generator index of the split's first event */
    int64_t events;
    int n_shards;
} split_plan;

int dataset_generate(const char *dir, const gen_config *gen, int64_t n_train, int64_t n_valid,
                     int n_shards, int force, MPI_Comm comm)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", dir);
    int n_vshards = (int)((n_valid * n_shards + n_train - 1) / (n_train > 0 ? n_train : 1));
    if (n_vshards < 1) n_vshards = 1;
    if (n_vshards > n_valid && n_valid > 0) n_vshards = (int)n_valid;
    split_plan plan[2] = {{"train", 0, n_train, n_shards}, {"valid", (uint64_t)n_train, n_valid, n_vshards}};
    int total = plan[0].n_shards + plan[1].n_shards;

    int fail = 0;
    if (rank == 0) {
        struct stat st;
        if (stat(dir, &st) == 0 && !force) {
            mlpf_errorf("%s already exists (use --force to replace it)\n", dir);
            fail = 1;
        }
        if (!fail && stat(tmp, &st) == 0) remove_tree(tmp);
        char sub[4300];
        for (int s = 0; s < 2 && !fail; s++) {
            snprintf(sub, sizeof sub, "%s/%s", tmp, plan[s].split);
            if ((s == 0 && mkdir(tmp, 0755) != 0) || mkdir(sub, 0755) != 0) {
                mlpf_errorf("cannot create %s: %s\n", s ? sub : tmp, strerror(errno));
                fail = 1;
            }
        }
    }
    MPI_Bcast(&fail, 1, MPI_INT, 0, comm);
    if (fail) return -1;

    /* per shard: events, elements, bytes, crc; ranks write shards round robin */
    int64_t *info = calloc((size_t)total * 4, sizeof(int64_t));
    char source[256];
    snprintf(source, sizeof source, "synthetic seed=%llu mean_elements=%d",
             (unsigned long long)gen->seed, gen->mean_elements);
    int k = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < plan[s].n_shards; i++, k++) {
            if (k % size != rank) continue;
            int64_t a = plan[s].events * i / plan[s].n_shards, b = plan[s].events * (i + 1) / plan[s].n_shards;
            char path[4400];
            snprintf(path, sizeof path, "%s/%s/shard-%04d.h5", tmp, plan[s].split, i);
            int64_t elements = 0, bytes;
            if (write_shard(path, gen, plan[s].first_gen + (uint64_t)a, b - a, source, &elements) != 0) {
                fail = 1;
                continue;
            }
            uint32_t crc = file_crc32(path, &bytes);
            info[k * 4 + 0] = b - a;
            info[k * 4 + 1] = elements;
            info[k * 4 + 2] = bytes;
            info[k * 4 + 3] = crc;
        }
    MPI_Allreduce(MPI_IN_PLACE, info, total * 4, MPI_INT64_T, MPI_SUM, comm);
    if (mpictx_any(fail)) {
        free(info);
        return -1;
    }
    if (rank == 0) {
        json_t *root = json_object();
        json_object_set_new(root, "format", json_string(DATASET_FORMAT));
        json_object_set_new(root, "version", json_integer(SHARD_VERSION));
        json_object_set_new(root, "source", json_string(source));
        k = 0;
        for (int s = 0; s < 2; s++) {
            json_t *sp = json_object(), *arr = json_array();
            int64_t elements = 0;
            for (int i = 0; i < plan[s].n_shards; i++, k++) {
                char file[64], crc[16];
                snprintf(file, sizeof file, "%s/shard-%04d.h5", plan[s].split, i);
                snprintf(crc, sizeof crc, "%08x", (unsigned)info[k * 4 + 3]);
                json_t *sh = json_object();
                json_object_set_new(sh, "file", json_string(file));
                json_object_set_new(sh, "events", json_integer(info[k * 4 + 0]));
                json_object_set_new(sh, "elements", json_integer(info[k * 4 + 1]));
                json_object_set_new(sh, "bytes", json_integer(info[k * 4 + 2]));
                json_object_set_new(sh, "crc32", json_string(crc));
                json_array_append_new(arr, sh);
                elements += info[k * 4 + 1];
            }
            json_object_set_new(sp, "events", json_integer(plan[s].events));
            json_object_set_new(sp, "elements", json_integer(elements));
            json_object_set_new(sp, "shards", arr);
            json_object_set_new(root, plan[s].split, sp);
        }
        char mpath[4300];
        snprintf(mpath, sizeof mpath, "%s/manifest.json", tmp);
        if (json_dump_file(root, mpath, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
            mlpf_errorf("cannot write %s\n", mpath);
            fail = 1;
        }
        json_decref(root);
        struct stat st;
        if (!fail && stat(dir, &st) == 0 && remove_tree(dir) != 0) {
            mlpf_errorf("cannot remove the old %s: %s\n", dir, strerror(errno));
            fail = 1;
        }
        if (!fail && rename(tmp, dir) != 0) {
            mlpf_errorf("cannot rename %s to %s: %s\n", tmp, dir, strerror(errno));
            fail = 1;
        }
        if (fail) remove_tree(tmp);
    }
    MPI_Bcast(&fail, 1, MPI_INT, 0, comm);
    free(info);
    return fail ? -1 : 0;
}

/* ------------------------------------------------------------------ reading */

/* Report an error found identically by every rank once (rank 0). */
#define SAME_ON_ALL_RANKS(rank, ...)                                                               \
    do {                                                                                           \
        if ((rank) == 0) mlpf_errorf(__VA_ARGS__);                                                 \
    } while (0)

static int parse_manifest(dataset_t *ds, int rank)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", ds->dir);
    struct stat st;
    if (stat(ds->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        SAME_ON_ALL_RANKS(rank, "dataset directory %s does not exist (create one with 'mlpfbench generate --out %s')",
                          ds->dir, ds->dir);
        return -1;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        SAME_ON_ALL_RANKS(rank, "cannot read the manifest %s: %s (line %d)", path, jerr.text, jerr.line);
        return -1;
    }
    int rc = -1;
    const char *fmt = json_string_value(json_object_get(root, "format"));
    json_t *ver = json_object_get(root, "version");
    json_t *sp = json_object_get(root, ds->split);
    json_t *shards = json_object_get(sp, "shards");
    if (!fmt || strcmp(fmt, DATASET_FORMAT) != 0 || !json_is_integer(ver) ||
        json_integer_value(ver) != SHARD_VERSION) {
        SAME_ON_ALL_RANKS(rank, "%s is not an %s version %d manifest (format '%s', version %lld)", path,
                          DATASET_FORMAT, SHARD_VERSION, fmt ? fmt : "?",
                          json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL);
    } else if (!json_is_array(shards) || json_array_size(shards) == 0) {
        SAME_ON_ALL_RANKS(rank, "%s has no '%s' shards", path, ds->split);
    } else {
        ds->n_shards = (int)json_array_size(shards);
        ds->shards = calloc(ds->n_shards, sizeof(shard_t));
        rc = 0;
        for (int i = 0; i < ds->n_shards && rc == 0; i++) {
            json_t *s = json_array_get(shards, i);
            shard_t *sh = &ds->shards[i];
            const char *file = json_string_value(json_object_get(s, "file"));
            const char *crc = json_string_value(json_object_get(s, "crc32"));
            json_t *ev = json_object_get(s, "events"), *el = json_object_get(s, "elements"),
                   *by = json_object_get(s, "bytes");
            char *end = NULL;
            unsigned long c = crc ? strtoul(crc, &end, 16) : 0;
            if (!file || strlen(file) >= sizeof sh->file || strstr(file, "..") || !crc ||
                strlen(crc) != 8 || *end || !json_is_integer(ev) || !json_is_integer(el) ||
                !json_is_integer(by) || json_integer_value(ev) < 0 || json_integer_value(el) < 0) {
                SAME_ON_ALL_RANKS(rank, "%s: entry %d of '%s' is malformed", path, i, ds->split);
                rc = -1;
                break;
            }
            snprintf(sh->file, sizeof sh->file, "%s", file);
            snprintf(sh->path, sizeof sh->path, "%.3800s/%.255s", ds->dir, file);
            sh->events = json_integer_value(ev);
            sh->elements = json_integer_value(el);
            sh->bytes = json_integer_value(by);
            sh->crc32 = (uint32_t)c;
            sh->first_event = ds->events;
            sh->fid = sh->dX = sh->dY = -1;
            ds->events += sh->events;
            ds->elements += sh->elements;
        }
    }
    json_decref(root);
    return rc;
}

static int probe_shard(const shard_t *sh, int rank);

/* Each rank checks the size and CRC-32 of its share of the shards, then
 * probes them (probe_shard). */
static int check_integrity(dataset_t *ds, int rank, int size)
{
    int fail = 0;
    for (int i = rank; i < ds->n_shards; i += size) {
        shard_t *sh = &ds->shards[i];
        int64_t bytes;
        uint32_t crc = file_crc32(sh->path, &bytes);
        if (bytes < 0) {
            mlpf_errorf("rank %d: cannot read shard %s: %s\n", rank, sh->path,
                    strerror(errno));
            fail = 1;
        } else if (bytes != sh->bytes) {
            mlpf_errorf("rank %d: shard %s has %lld bytes, the manifest says %lld "
                            "(truncated or replaced)\n",
                    rank, sh->path, (long long)bytes, (long long)sh->bytes);
            fail = 1;
        } else if (crc != sh->crc32) {
            mlpf_errorf("rank %d: shard %s is damaged: CRC-32 %08x, the manifest "
                            "says %08x\n",
                    rank, sh->path, crc, sh->crc32);
            fail = 1;
        } else if (probe_shard(sh, rank) != 0) {
            fail = 1;
        }
    }
    return fail;
}

static int read_string_attr(hid_t obj, const char *name, char *buf, size_t n)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0) { /* h5py writes these */
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        char *v = NULL;
        if (H5Aread(a, mt, &v) >= 0 && v) {
            snprintf(buf, n, "%s", v);
            H5free_memory(v);
            rc = 0;
        }
        H5Tclose(mt);
    } else if (H5Tget_class(t) == H5T_STRING && H5Tget_size(t) < n) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n);
        memset(buf, 0, n);
        rc = H5Aread(a, mt, buf) < 0 ? -1 : 0;
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* Dataset `name` must be 2-D with `cols` columns (cols > 0) or 1-D; returns rows or -1. */
static int64_t dims_of(hid_t d, int cols)
{
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int r = H5Sget_simple_extent_ndims(sp);
    if (r == 1 || r == 2) H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (cols > 0 && (r != 2 || dims[1] != (hsize_t)cols)) return -1;
    if (cols == 0 && r != 1) return -1;
    return (int64_t)dims[0];
}

static int open_shard(shard_t *sh, MPI_Comm comm, int rank)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (comm != MPI_COMM_NULL) H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL); /* else: serial (probe) */
    sh->fid = H5Fopen(sh->path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (sh->fid < 0) {
        SAME_ON_ALL_RANKS(rank, "shard %s is not an HDF5 file", sh->path);
        return -1;
    }
    char fmt[64] = "";
    long long ver = -1;
    if (read_string_attr(sh->fid, "format", fmt, sizeof fmt) != 0 || strcmp(fmt, SHARD_FORMAT) != 0) {
        SAME_ON_ALL_RANKS(rank, "shard %s is not an %s file (format attribute '%s')", sh->path,
                          SHARD_FORMAT, fmt);
        return -1;
    }
    if (H5Aexists(sh->fid, "version") <= 0) {
        SAME_ON_ALL_RANKS(rank, "shard %s has no version attribute", sh->path);
        return -1;
    }
    hid_t a = H5Aopen(sh->fid, "version", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_LLONG, &ver);
    H5Aclose(a);
    if (ver != SHARD_VERSION) {
        SAME_ON_ALL_RANKS(rank, "shard %s has format version %lld; this mlpfbench reads version %d",
                          sh->path, ver, SHARD_VERSION);
        return -1;
    }
    const char *names[3] = {"X", "ygen", "offsets"};
    for (int i = 0; i < 3; i++)
        if (H5Lexists(sh->fid, names[i], H5P_DEFAULT) <= 0) {
            SAME_ON_ALL_RANKS(rank, "shard %s has no dataset /%s", sh->path, names[i]);
            return -1;
        }
    sh->dX = H5Dopen2(sh->fid, "X", H5P_DEFAULT);
    sh->dY = H5Dopen2(sh->fid, "ygen", H5P_DEFAULT);
    hid_t dO = H5Dopen2(sh->fid, "offsets", H5P_DEFAULT);
    int64_t rx = dims_of(sh->dX, BATCH_X_COLS), ry = dims_of(sh->dY, BATCH_Y_COLS), ro = dims_of(dO, 0);
    int rc = 0;
    if (rx < 0 || ry < 0 || ro < 0) {
        SAME_ON_ALL_RANKS(rank, "shard %s: wrong dataset shapes (need X (n, %d), ygen (n, %d), "
                                "offsets (events + 1))",
                          sh->path, BATCH_X_COLS, BATCH_Y_COLS);
        rc = -1;
    } else if (rx != ry || ro != sh->events + 1 || rx != sh->elements) {
        SAME_ON_ALL_RANKS(rank, "shard %s: X has %lld rows, ygen %lld, offsets %lld entries; the "
                                "manifest says %lld events, %lld elements",
                          sh->path, (long long)rx, (long long)ry, (long long)ro,
                          (long long)sh->events, (long long)sh->elements);
        rc = -1;
    } else {
        sh->offsets = malloc(sizeof(int64_t) * (sh->events + 1));
        if (H5Dread(dO, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sh->offsets) < 0) {
            SAME_ON_ALL_RANKS(rank, "shard %s: cannot read /offsets", sh->path);
            rc = -1;
        }
        for (int64_t e = 0; e < sh->events && rc == 0; e++)
            if (sh->offsets[e + 1] < sh->offsets[e] || (e == 0 && sh->offsets[0] != 0)) {
                SAME_ON_ALL_RANKS(rank, "shard %s: offsets are not monotonic at event %lld "
                                        "(%lld, then %lld)",
                                  sh->path, (long long)e, (long long)sh->offsets[e],
                                  (long long)sh->offsets[e + 1]);
                rc = -1;
            }
        if (rc == 0 && sh->offsets[sh->events] != rx) {
            SAME_ON_ALL_RANKS(rank, "shard %s: the last offset is %lld but X has %lld rows", sh->path,
                              (long long)sh->offsets[sh->events], (long long)rx);
            rc = -1;
        }
    }
    H5Dclose(dO);
    return rc;
}


/* ------------------------------------------------------------------ probing */
/* HDF5 1.10 can crash on forged files (docs/design.md "Reliability"): each
 * shard is first opened and read through, with the serial driver, in a
 * throw-away child process. Only if the library survives there does the
 * MPI process open it. */

#define PROBE_EXIT_OK 0
#define PROBE_TIMEOUT_S 60

int dataset_probe_main(int argc, char **argv)
{
    if (argc != 5) return 2;
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore); /* a crash here is expected and reported by the parent */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* no free-list caching: memory HDF5 frees goes back to malloc at once, where
     * a use after free meets MALLOC_PERTURB_'s pattern (or the sanitizer) */
    H5set_free_list_limits(0, 0, 0, 0, 0, 0);
    if (failpoint("probe-crash", 0, 0)) raise(SIGSEGV);
    shard_t sh;
    memset(&sh, 0, sizeof sh);
    sh.fid = sh.dX = sh.dY = -1;
    snprintf(sh.path, sizeof sh.path, "%s", argv[2]);
    sh.events = strtoll(argv[3], NULL, 10);
    sh.elements = strtoll(argv[4], NULL, 10);
    /* rank 1: the checks stay silent; the parent repeats them and reports */
    if (open_shard(&sh, MPI_COMM_NULL, 1) == 0) {
        enum { BLOCK = 16384 };
        float *buf = malloc(sizeof(float) * BLOCK * BATCH_X_COLS);
        hid_t ds[2] = {sh.dX, sh.dY};
        int cols[2] = {BATCH_X_COLS, BATCH_Y_COLS};
        for (int k = 0; k < 2 && buf; k++)
            for (int64_t r = 0; r < sh.elements; r += BLOCK) {
                hsize_t n = (hsize_t)(sh.elements - r < BLOCK ? sh.elements - r : BLOCK);
                hsize_t start[2] = {(hsize_t)r, 0}, count[2] = {n, (hsize_t)cols[k]};
                hid_t fs = H5Dget_space(ds[k]), ms = H5Screate_simple(2, count, NULL);
                H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
                herr_t st = H5Dread(ds[k], H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf);
                H5Sclose(ms);
                H5Sclose(fs);
                if (st < 0) break;
            }
        free(buf);
    }
    if (sh.dX >= 0) H5Dclose(sh.dX);
    if (sh.dY >= 0) H5Dclose(sh.dY);
    if (sh.fid >= 0) H5Fclose(sh.fid);
    free(sh.offsets);
    return PROBE_EXIT_OK;
}

/* 0: the library survived the shard (its checks may still refuse it later);
 * -1: it crashed or hung on it, with the message recorded. */
static int probe_shard(const shard_t *sh, int rank)
{
    /* the probe is `mlpfbench __probe-shard`: this program if it is mlpfbench,
     * else (test tools, the fuzz harness) MLPF_PROBE_EXE or the mlpfbench
     * next to this program */
    char exe[4096], self[4000];
    const char *env = getenv("MLPF_PROBE_EXE");
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    const char *base = strrchr(self, '/');
    if (env && *env) {
        snprintf(exe, sizeof exe, "%s", env);
    } else if (n > 0 && !strcmp(base ? base + 1 : self, "mlpfbench")) {
        snprintf(exe, sizeof exe, "%s", self);
    } else if (n > 0 && base) {
        snprintf(exe, sizeof exe, "%.*s/mlpfbench", (int)(base - self), self);
    } else {
        exe[0] = '\0';
    }
    if (!exe[0] || access(exe, X_OK) != 0) {
        mlpf_errorf("rank %d: cannot find mlpfbench (%s) to probe shard %s; set MLPF_PROBE_EXE", rank,
                    exe[0] ? exe : "no /proc/self/exe", sh->path);
        return -1;
    }
    char ev[32], el[32];
    snprintf(ev, sizeof ev, "%lld", (long long)sh->events);
    snprintf(el, sizeof el, "%lld", (long long)sh->elements);
    char *args[] = {exe, "__probe-shard", (char *)sh->path, ev, el, NULL};
    pid_t pid;
    extern char **environ;
    int n_env = 0;
    while (environ[n_env]) n_env++;
    char **envp = malloc(sizeof(char *) * (n_env + 2));
    if (!envp) return -1;
    memcpy(envp, environ, sizeof(char *) * n_env);
    envp[n_env] = "MALLOC_PERTURB_=165"; /* freed memory is overwritten: stale reads show */
    envp[n_env + 1] = NULL;
    int err = posix_spawn(&pid, exe, NULL, NULL, args, envp);
    free(envp);
    if (err != 0) {
        mlpf_errorf("rank %d: cannot start the shard probe %s: %s", rank, exe, strerror(err));
        return -1;
    }
    int status = 0;
    double t0 = mlpf_now();
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            mlpf_errorf("rank %d: lost the shard probe of %s: %s", rank, sh->path, strerror(errno));
            return -1;
        }
        if (mlpf_now() - t0 > PROBE_TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            mlpf_errorf("rank %d: shard %s is damaged: the HDF5 library did not finish reading it "
                        "in %d s (in a probe process)", rank, sh->path, PROBE_TIMEOUT_S);
            return -1;
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == PROBE_EXIT_OK) return 0;
    char how[96];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "signal %d, %s", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
    mlpf_errorf("rank %d: shard %s is damaged or forged: the HDF5 library crashed reading it (%s, "
                "in a probe process); regenerate or re-convert the shard",
                rank, sh->path, how);
    return -1;
}

int dataset_open(dataset_t *ds, const char *dir, const char *split, MPI_Comm comm)
{
    int rank, size;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(ds, 0, sizeof *ds);
    snprintf(ds->dir, sizeof ds->dir, "%s", dir);
    snprintf(ds->split, sizeof ds->split, "%s", split);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* our messages name the file and the cause */
    if (parse_manifest(ds, rank) != 0) {
        dataset_close(ds);
        return -1;
    }
    if (mpictx_any(check_integrity(ds, rank, size))) {
        dataset_close(ds);
        return -1;
    }
    for (int i = 0; i < ds->n_shards; i++)
        if (open_shard(&ds->shards[i], comm, rank) != 0) {
            dataset_close(ds);
            return -1;
        }
    return 0;
}

void dataset_close(dataset_t *ds)
{
    for (int i = 0; i < ds->n_shards; i++) {
        shard_t *sh = &ds->shards[i];
        if (sh->dX >= 0) H5Dclose(sh->dX);
        if (sh->dY >= 0) H5Dclose(sh->dY);
        if (sh->fid >= 0) H5Fclose(sh->fid);
        free(sh->offsets);
    }
    free(ds->shards);
    ds->shards = NULL;
    ds->n_shards = 0;
}

int dataset_shard_of(const dataset_t *ds, int64_t id)
{
    int lo = 0, hi = ds->n_shards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ds->shards[mid].first_event <= id) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Collective read of this rank's events of one shard (rows into buf). */
static int read_rows(hid_t d, int cols, const shard_t *sh, const int64_t *ids, int n, float *buf)
{
    hid_t fs = H5Dget_space(d);
    H5Sselect_none(fs);
    int64_t rows = 0;
    for (int i = 0; i < n; i++) {
        int64_t e = ids[i] - sh->first_event, a = sh->offsets[e], r = sh->offsets[e + 1] - a;
        if (r == 0) continue;
        hsize_t start[2] = {(hsize_t)a, 0}, count[2] = {(hsize_t)r, (hsize_t)cols};
        H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, NULL, count, NULL);
        rows += r;
    }
    hsize_t mdims[2] = {(hsize_t)(rows > 0 ? rows : 1), (hsize_t)cols};
    hid_t ms = H5Screate_simple(2, mdims, NULL);
    if (rows == 0) H5Sselect_none(ms);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    float dummy[BATCH_X_COLS];
    herr_t st = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, dxpl, rows > 0 ? buf : dummy);
    H5Pclose(dxpl);
    H5Sclose(ms);
    H5Sclose(fs);
    return st < 0 ? -1 : 0;
}

int64_t dataset_read(dataset_t *ds, const int64_t *ids, int n_ids, const int *shards_touched,
                     int n_touched, mlpf_batch *b, char *err, size_t errlen)
{
    int64_t *sizes = calloc(n_ids > 0 ? n_ids : 1, sizeof(int64_t));
    for (int i = 0; i < n_ids; i++) {
        const shard_t *sh = &ds->shards[dataset_shard_of(ds, ids[i])];
        int64_t e = ids[i] - sh->first_event;
        sizes[i] = sh->offsets[e + 1] - sh->offsets[e];
    }
    int rc = batch_alloc(b, n_ids, sizes);
    free(sizes);
    if (rc != 0) {
        snprintf(err, errlen, "out of memory for a batch of %d events", n_ids);
        return -1;
    }
    int i0 = 0, fail = 0;
    for (int t = 0; t < n_touched; t++) {
        const shard_t *sh = &ds->shards[shards_touched[t]];
        int i1 = i0;
        while (i1 < n_ids && ids[i1] < sh->first_event + sh->events) i1++;
        if (!fail && i0 < n_ids && ids[i0] < sh->first_event) {
            snprintf(err, errlen, "event %lld is not in the shards read for this batch", (long long)ids[i0]);
            fail = 1;
        }
        /* every rank takes part in both reads, with or without rows */
        if (read_rows(sh->dX, BATCH_X_COLS, sh, ids + i0, i1 - i0, b->X + b->offsets[i0] * BATCH_X_COLS) != 0 ||
            read_rows(sh->dY, BATCH_Y_COLS, sh, ids + i0, i1 - i0, b->y + b->offsets[i0] * BATCH_Y_COLS) != 0) {
            if (!fail) snprintf(err, errlen, "shard %s: read failed", sh->path);
            fail = 1;
        }
        i0 = i1;
    }
    if (!fail && i0 != n_ids) {
        snprintf(err, errlen, "event %lld is not in the shards read for this batch", (long long)ids[i0]);
        fail = 1;
    }
    /* validate what the model relies on */
    for (int i = 0; i < n_ids && !fail; i++)
        for (int64_t r = b->offsets[i]; r < b->offsets[i + 1] && !fail; r++) {
            const float *x = b->X + r * BATCH_X_COLS, *y = b->y + r * BATCH_Y_COLS;
            const char *why = NULL;
            int col = 0;
            for (int c = 0; c < BATCH_X_COLS && !why; c++)
                if (!isfinite(x[c])) why = "X is not finite", col = c;
            for (int c = 0; c < BATCH_Y_COLS && !why; c++)
                if (!isfinite(y[c])) why = "ygen is not finite", col = c;
            if (!why && x[0] != 1.0f && x[0] != 2.0f) why = "element type (X column 0) is not 1 or 2";
            if (!why && (y[0] != floorf(y[0]) || y[0] < 0.0f || y[0] > 5.0f))
                why = "target class (ygen column 0) is not an integer 0..5";
            if (why) {
                const shard_t *sh = &ds->shards[dataset_shard_of(ds, ids[i])];
                snprintf(err, errlen, "shard %s, event %lld (row %lld, column %d): %s", sh->path,
                         (long long)(ids[i] - sh->first_event),
                         (long long)(r - b->offsets[i]), col, why);
                fail = 1;
            }
        }
    if (fail) {
        batch_free(b);
        return -1;
    }
    return b->n_rows * (int64_t)sizeof(float) * (BATCH_X_COLS + BATCH_Y_COLS);
}
