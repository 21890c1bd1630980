#include "h5util.h"

#include <stdio.h>
#include <string.h>

int h5_make_parents(hid_t file, const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        htri_t exists = H5Lexists(file, buf, H5P_DEFAULT);
        if (exists < 0) return -1;
        if (!exists) {
            hid_t g = H5Gcreate2(file, buf, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) return -1;
            H5Gclose(g);
        }
        *p = '/';
    }
    return 0;
}

int h5_write(hid_t file, const char *path, hid_t type, const void *data, int64_t d0, int64_t d1)
{
    if (h5_make_parents(file, path) != 0) return -1;
    hsize_t dims[2] = {(hsize_t)d0, (hsize_t)d1};
    hid_t space = H5Screate_simple(d1 > 0 ? 2 : 1, dims, NULL);
    hid_t ds = H5Dcreate2(file, path, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = ds < 0 ? -1 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    if (st < 0) fprintf(stderr, "mlpfbench: cannot write HDF5 dataset %s\n", path);
    return st < 0 ? -1 : 0;
}

static int attr(hid_t obj, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    if (st < 0) fprintf(stderr, "mlpfbench: cannot write HDF5 attribute %s\n", name);
    return st < 0 ? -1 : 0;
}

int h5_attr_int(hid_t obj, const char *name, long long value)
{
    return attr(obj, name, H5T_NATIVE_LLONG, &value);
}

int h5_attr_double(hid_t obj, const char *name, double value)
{
    return attr(obj, name, H5T_NATIVE_DOUBLE, &value);
}

int h5_attr_string(hid_t obj, const char *name, const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    int rc = attr(obj, name, type, value);
    H5Tclose(type);
    return rc;
}
