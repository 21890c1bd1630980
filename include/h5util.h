/* Small helpers over the HDF5 C API: whole-dataset writes and reads, and
 * attributes. Errors are reported on stderr with the file and object name. */
#ifndef MLPF_H5UTIL_H
#define MLPF_H5UTIL_H

#include <hdf5.h>
#include <stdint.h>

/* Create every missing group of a slash-separated path (the last component excluded). */
int h5_make_parents(hid_t file, const char *path);
/* Write a dataset of rank 1 or 2 (dims[1] == 0 means rank 1). type: H5T_NATIVE_*. */
int h5_write(hid_t file, const char *path, hid_t type, const void *data, int64_t d0, int64_t d1);
int h5_attr_int(hid_t obj, const char *name, long long value);
int h5_attr_double(hid_t obj, const char *name, double value);
int h5_attr_string(hid_t obj, const char *name, const char *value);

#endif
