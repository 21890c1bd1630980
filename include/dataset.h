/* Datasets of HDF5 shards (docs/data-format.md): writing, validating and
 * reading with parallel HDF5 (MPI-IO). Every rank opens the shards of a split
 * collectively and reads only its own events. */
#ifndef MLPF_DATASET_H
#define MLPF_DATASET_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>

#include "batch.h"
#include "generator.h"

#define SHARD_FORMAT "mlpfbench-shard"
#define DATASET_FORMAT "mlpfbench-dataset"
enum { SHARD_VERSION = 1 };

typedef struct {
    char path[4096]; /* full path */
    char file[256];  /* relative to the dataset directory, as in the manifest */
    int64_t events, elements, bytes;
    uint32_t crc32;
    int64_t first_event; /* global index of its first event in the split */
    hid_t fid, dX, dY;
    int64_t *offsets;    /* events + 1 */
} shard_t;

typedef struct {
    char dir[4096];
    char split[16];
    int n_shards;
    shard_t *shards;
    int64_t events, elements;
} dataset_t;

/* Write a synthetic dataset: n_train and n_valid events from the generator
 * (training event i is generator event i, validation event i is generator
 * event n_train + i), in n_shards training shards (validation shards in
 * proportion, at least one). Written into a temporary directory and renamed,
 * so a failed run leaves nothing. Collective over comm: ranks write shards
 * round robin. Returns 0, or -1 with a message on stderr. */
int dataset_generate(const char *dir, const gen_config *gen, int64_t n_train, int64_t n_valid,
                     int n_shards, int force, MPI_Comm comm);

/* Open a split ("train" or "valid") of a dataset: read the manifest, check
 * every shard's size and CRC-32 (each rank checks a share of the shards), then
 * open all shards collectively and check format, version, shapes and offsets.
 * Collective. Returns 0, or -1 on every rank with the cause printed (naming
 * the file) by the rank that found it. */
int dataset_open(dataset_t *ds, const char *dir, const char *split, MPI_Comm comm);
void dataset_close(dataset_t *ds);

/* Read the events `ids` (global indices, ascending) of this rank into b.
 * Collective over the communicator the dataset was opened with: every rank
 * calls it with the same `shards_touched` list (the shards of the whole global
 * batch, ascending) and its own ids (possibly none). Validates the values
 * (finite, element type 1 or 2, class 0..5): on bad data, returns -1 with a
 * message in err naming the file and event. Returns bytes read (>= 0). */
int64_t dataset_read(dataset_t *ds, const int64_t *ids, int n_ids, const int *shards_touched,
                     int n_touched, mlpf_batch *b, char *err, size_t errlen);
/* Shard that holds global event id. */
int dataset_shard_of(const dataset_t *ds, int64_t id);

/* `mlpfbench __probe-shard FILE EVENTS ELEMENTS` (internal, no MPI): opens
 * the shard with the serial HDF5 driver, runs the reader's checks silently and
 * reads every row; exits 0 if the HDF5 library survived. dataset_open runs it
 * in a child process for every shard before the MPI processes open them. */
int dataset_probe_main(int argc, char **argv);

/* CRC-32 (zlib) of a whole file; -1 in *size on error. */
uint32_t file_crc32(const char *path, int64_t *size);

#endif
