/* libFuzzer harness: the shard reader on arbitrary files. The input is a
 * 16-byte header (events, elements: int64, what the manifest claims) and the
 * shard bytes. A manifest with the file's true size and CRC-32 is written, so
 * the bytes reach HDF5 and our format, shape, offset and value checks (the CRC
 * check alone would refuse almost every mutated input). dataset_open first
 * runs the probe process (MLPF_PROBE_EXE, set by make fuzz to the sanitizer
 * build of mlpfbench); what crashes HDF5 there is refused. A crash here is an
 * input that passes the probe and still breaks the reader. Every outcome but a
 * crash or a hang is fine: refusals are expected. HDF5 is closed after each
 * input, so each starts from a fresh library state, as a new run would. */
#include <jansson.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"

static char dir[256];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    MPI_Init(argc, argv);
    snprintf(dir, sizeof dir, "/tmp/mlpf-fuzz-%d", (int)getpid());
    char sub[300];
    mkdir(dir, 0755);
    snprintf(sub, sizeof sub, "%s/train", dir);
    mkdir(sub, 0755);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 16) return 0;
    int64_t hdr[2];
    memcpy(hdr, data, sizeof hdr);
    char path[400], mpath[400];
    snprintf(path, sizeof path, "%s/train/shard-0000.h5", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data + 16, 1, size - 16, f);
    fclose(f);
    int64_t bytes;
    uint32_t crc = file_crc32(path, &bytes);
    char crcs[16];
    snprintf(crcs, sizeof crcs, "%08x", crc);
    json_t *root = json_pack("{s:s, s:i, s:{s:I, s:I, s:[{s:s, s:I, s:I, s:I, s:s}]}}", "format",
                             DATASET_FORMAT, "version", SHARD_VERSION, "train", "events",
                             (json_int_t)hdr[0], "elements", (json_int_t)hdr[1], "shards", "file",
                             "train/shard-0000.h5", "events", (json_int_t)hdr[0], "elements",
                             (json_int_t)hdr[1], "bytes", (json_int_t)bytes, "crc32", crcs);
    snprintf(mpath, sizeof mpath, "%s/manifest.json", dir);
    json_dump_file(root, mpath, 0);
    json_decref(root);
    dataset_t ds;
    if (dataset_open(&ds, dir, "train", MPI_COMM_SELF) == 0) {
        int n = ds.events < 64 ? (int)ds.events : 64;
        int64_t *ids = malloc(sizeof(int64_t) * (n ? n : 1));
        for (int i = 0; i < n; i++) ids[i] = i;
        int touched = 0;
        mlpf_batch b;
        char err[512];
        if (dataset_read(&ds, ids, n, &touched, n ? 1 : 0, &b, err, sizeof err) >= 0) batch_free(&b);
        free(ids);
        dataset_close(&ds);
    }
    H5close();
    return 0;
}
