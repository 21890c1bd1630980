#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "mpictx.h"

enum { CKPT_VERSION = 1 };

static int put(FILE *f, const void *p, size_t n, uLong *crc)
{
    *crc = crc32(*crc, p, (uInt)n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int put_floats(FILE *f, const float *p, size_t n, uLong *crc)
{
    const size_t chunk = 1 << 20; /* crc32 takes an unsigned int length */
    for (size_t i = 0; i < n; i += chunk)
        if (put(f, p + i, sizeof(float) * (n - i < chunk ? n - i : chunk), crc) != 0) return -1;
    return 0;
}

int checkpoint_write(const char *path, const checkpoint_header *h0, const float *params,
                     const adam_state *opt)
{
    checkpoint_header h = *h0;
    memcpy(h.magic, "MLPFCKPT", 8);
    h.version = CKPT_VERSION;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        mlpf_errorf("cannot write the checkpoint %s: %s", tmp, strerror(errno));
        return -1;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    size_t n = (size_t)h.n_params;
    int rc = put(f, &h, sizeof h, &crc) | put_floats(f, params, n, &crc) | put_floats(f, opt->m, n, &crc) |
             put_floats(f, opt->v, n, &crc);
    uint32_t c = (uint32_t)crc;
    if (rc != 0 || fwrite(&c, sizeof c, 1, f) != 1 || fclose(f) != 0 || rename(tmp, path) != 0) {
        mlpf_errorf("cannot write the checkpoint %s: %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

int checkpoint_read(const char *path, const char *preset, int64_t n_params, checkpoint_header *h,
                    float *params, adam_state *opt)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        mlpf_errorf("cannot read the checkpoint %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = (size_t)n_params;
    size_t want = sizeof *h + 3 * n * sizeof(float) + sizeof(uint32_t);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    int rc = -1;
    if (size < (long)sizeof *h || fread(h, sizeof *h, 1, f) != 1 || memcmp(h->magic, "MLPFCKPT", 8) != 0) {
        mlpf_errorf("%s is not an mlpfbench checkpoint", path);
    } else if (h->version != CKPT_VERSION) {
        mlpf_errorf("checkpoint %s has version %d; this mlpfbench reads version %d", path, h->version, CKPT_VERSION);
    } else if (strncmp(h->preset, preset, sizeof h->preset) != 0 || h->n_params != n_params) {
        mlpf_errorf("checkpoint %s is of preset '%.32s' with %lld parameters, not '%s' with %lld", path,
                    h->preset, (long long)h->n_params, preset, (long long)n_params);
    } else if ((size_t)size != want) {
        mlpf_errorf("checkpoint %s has %ld bytes, %zu expected (truncated?)", path, size, want);
    } else if (fread(params, sizeof(float), n, f) != n || fread(opt->m, sizeof(float), n, f) != n ||
               fread(opt->v, sizeof(float), n, f) != n) {
        mlpf_errorf("cannot read the checkpoint %s", path);
    } else {
        uint32_t stored = 0;
        uLong crc = crc32(0L, Z_NULL, 0);
        crc = crc32(crc, (const Bytef *)h, sizeof *h);
        const size_t chunk = 1 << 20;
        const float *arrs[3] = {params, opt->m, opt->v};
        for (int a = 0; a < 3; a++)
            for (size_t i = 0; i < n; i += chunk)
                crc = crc32(crc, (const Bytef *)(arrs[a] + i), (uInt)(sizeof(float) * (n - i < chunk ? n - i : chunk)));
        if (fread(&stored, sizeof stored, 1, f) != 1 || stored != (uint32_t)crc)
            mlpf_errorf("checkpoint %s is damaged (CRC-32 mismatch)", path);
        else {
            opt->step = h->adam_step;
            rc = 0;
        }
    }
    fclose(f);
    return rc;
}
