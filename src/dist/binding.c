#include "binding.h"

#include <ctype.h>
#include <errno.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpictx.h"

static void plan(int n_cores, int lr, int lsize, int *first, int *count)
{
    if (lsize <= n_cores) {
        *first = (int)((long long)lr * n_cores / lsize);
        *count = (int)((long long)(lr + 1) * n_cores / lsize) - *first;
    } else { /* oversubscribed: one shared core each */
        *first = lr % n_cores;
        *count = 1;
    }
}

static int topo_counts(hwloc_topology_t t, binding_info *b)
{
    b->n_packages = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PACKAGE);
    b->n_numa = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
    b->n_cores = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE);
    b->n_pus = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_PU);
    if (b->n_cores <= 0) b->n_cores = b->n_pus; /* some VMs report no cores */
    return b->n_cores > 0 ? 0 : -1;
}

/* The process's actual CPU set, as a list, into out->cpus. */
static void read_binding(hwloc_topology_t t, binding_info *out)
{
    hwloc_bitmap_t cur = hwloc_bitmap_alloc();
    char *s = NULL;
    if (hwloc_get_cpubind(t, cur, HWLOC_CPUBIND_PROCESS) == 0 && hwloc_bitmap_list_asprintf(&s, cur) >= 0) {
        snprintf(out->cpus, sizeof out->cpus, "%s", s);
        free(s);
    }
    hwloc_bitmap_free(cur);
}

int binding_setup(int lr, int lsize, int apply, binding_info *out)
{
    memset(out, 0, sizeof *out);
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0 || hwloc_topology_load(t) != 0) {
        fprintf(stderr, "mlpfbench: hwloc cannot read the machine's topology\n");
        return -1;
    }
    int rc = topo_counts(t, out);
    if (rc == 0) {
        plan(out->n_cores, lr, lsize, &out->first_core, &out->n_bound_cores);
        hwloc_obj_type_t type = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
        if (apply) {
            hwloc_bitmap_t set = hwloc_bitmap_alloc();
            for (int c = out->first_core; c < out->first_core + out->n_bound_cores; c++) {
                hwloc_obj_t obj = hwloc_get_obj_by_type(t, type, c);
                if (obj) hwloc_bitmap_or(set, set, obj->cpuset);
            }
            if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_PROCESS) != 0) {
                fprintf(stderr, "mlpfbench: local rank %d: cannot bind to cores %d-%d\n", lr,
                        out->first_core, out->first_core + out->n_bound_cores - 1);
                rc = -1;
            } else {
                out->bound = 1;
            }
            hwloc_bitmap_free(set);
        }
        read_binding(t, out);
    }
    hwloc_topology_destroy(t);
    return rc;
}

/* ------------------------------------------------------------ GPU runs */

static hwloc_obj_type_t core_type(hwloc_topology_t t)
{
    return hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE : HWLOC_OBJ_PU;
}

/* The logical indices of the cores inside cpuset, as a list ("0-15"). */
static void cores_list(hwloc_topology_t t, hwloc_const_cpuset_t cpuset, char *buf, size_t n)
{
    hwloc_bitmap_t idx = hwloc_bitmap_alloc();
    hwloc_obj_t c = NULL;
    while ((c = hwloc_get_next_obj_inside_cpuset_by_type(t, cpuset, core_type(t), c)) != NULL)
        hwloc_bitmap_set(idx, c->logical_index);
    if (hwloc_bitmap_list_snprintf(buf, n, idx) < 0 && n > 0) buf[0] = '\0';
    hwloc_bitmap_free(idx);
}

/* "package 0", "group 2", "the machine": the object a GPU's locality is. */
static void obj_name(hwloc_obj_t o, char *buf, size_t n)
{
    if (o->type == HWLOC_OBJ_MACHINE) {
        snprintf(buf, n, "the machine");
        return;
    }
    char type[64];
    snprintf(type, sizeof type, "%s", hwloc_obj_type_string(o->type));
    if (type[0] && type[1] && islower((unsigned char)type[1])) type[0] = (char)tolower((unsigned char)type[0]);
    snprintf(buf, n, "%.40s %u", type, o->logical_index);
}

/* The PCI device of bus id s (either case of hex digits; "0000:17:00.0",
 * "00000000:17:00.0" as NVML writes it, or "17:00.0"), NULL if the string is
 * not a bus id or the topology has no such device. */
static hwloc_obj_t find_pcidev(hwloc_topology_t t, const char *s)
{
    if (!s || !*s) return NULL;
    hwloc_obj_t o = hwloc_get_pcidev_by_busidstring(t, s);
    return o && o->type == HWLOC_OBJ_PCI_DEVICE ? o : NULL;
}

/* The locality of the GPU of bus id s: its first ancestor with a CPU set. */
static hwloc_obj_t gpu_locality(hwloc_topology_t t, const char *s)
{
    hwloc_obj_t o = find_pcidev(t, s);
    return o ? hwloc_get_non_io_ancestor_obj(t, o) : NULL;
}

int binding_plan_gpu(hwloc_topology_t t, int lr, int lsize, const char *const *node_pci, binding_info *out,
                     hwloc_bitmap_t set)
{
    memset(out, 0, sizeof *out);
    if (set) hwloc_bitmap_zero(set);
    if (lsize < 1 || lr < 0 || lr >= lsize) {
        snprintf(out->locality, sizeof out->locality, "local rank %d of %d is not a rank of the node", lr, lsize);
        return -1;
    }
    if (topo_counts(t, out) != 0) {
        snprintf(out->locality, sizeof out->locality, "the topology has no cores");
        return -1;
    }
    const hwloc_obj_type_t type = core_type(t);
    const char *mine = node_pci ? node_pci[lr] : NULL;
    hwloc_obj_t dev = find_pcidev(t, mine);
    hwloc_obj_t loc = dev ? hwloc_get_non_io_ancestor_obj(t, dev) : NULL;
    if (dev)
        snprintf(out->gpu_pci, sizeof out->gpu_pci, "%04x:%02x:%02x.%01x", dev->attr->pcidev.domain,
                 dev->attr->pcidev.bus, dev->attr->pcidev.dev, dev->attr->pcidev.func);
    else if (mine)
        snprintf(out->gpu_pci, sizeof out->gpu_pci, "%.31s", mine);
    int in_loc = loc ? hwloc_get_nbobjs_inside_cpuset_by_type(t, loc->cpuset, type) : 0;

    int first, count;
    hwloc_const_cpuset_t within = hwloc_topology_get_topology_cpuset(t);
    if (!dev || !loc || in_loc <= 0) {
        if (!mine || !*mine)
            snprintf(out->locality, sizeof out->locality,
                     "the GPU's PCI bus id is unknown; cores split as on a CPU node");
        else if (!dev)
            snprintf(out->locality, sizeof out->locality,
                     "the topology has no PCI device %.40s; cores split as on a CPU node", mine);
        else
            snprintf(out->locality, sizeof out->locality,
                     "no usable core near GPU %s; cores split as on a CPU node", out->gpu_pci);
        plan(out->n_cores, lr, lsize, &first, &count);
    } else {
        /* the ranks whose GPUs share this locality, and this rank's place among them */
        int group = 0, place = 0;
        for (int r = 0; r < lsize; r++) {
            hwloc_obj_t l = r == lr ? loc : gpu_locality(t, node_pci[r]);
            if (!l || !hwloc_bitmap_isequal(l->cpuset, loc->cpuset)) continue;
            if (r < lr) place++;
            group++;
        }
        plan(in_loc, place, group, &first, &count);
        within = loc->cpuset;
        char name[64], list[64];
        obj_name(loc, name, sizeof name);
        cores_list(t, loc->cpuset, list, sizeof list);
        int k = snprintf(out->locality, sizeof out->locality, "%s (cores %s), near GPU %s", name, list, out->gpu_pci);
        if (group > in_loc && k > 0 && k < (int)sizeof out->locality)
            snprintf(out->locality + k, sizeof out->locality - k, "; %d ranks share its %d cores", group, in_loc);
        out->gpu_local = 1;
    }

    /* the cores first .. first+count-1 of `within`, by logical index */
    hwloc_bitmap_t idx = hwloc_bitmap_alloc();
    for (int i = first; i < first + count; i++) {
        hwloc_obj_t c = hwloc_get_obj_inside_cpuset_by_type(t, within, type, (unsigned)i);
        if (!c) continue;
        if (i == first) out->first_core = (int)c->logical_index;
        hwloc_bitmap_set(idx, c->logical_index);
        if (set) hwloc_bitmap_or(set, set, c->cpuset);
    }
    out->n_bound_cores = hwloc_bitmap_weight(idx);
    if (hwloc_bitmap_list_snprintf(out->cores, sizeof out->cores, idx) < 0) out->cores[0] = '\0';
    hwloc_bitmap_free(idx);
    if (out->n_bound_cores > 0) return 0;
    snprintf(out->locality, sizeof out->locality, "no core of the topology for cores %d-%d", first, first + count - 1);
    return -1;
}

/* A topology with its I/O devices (PCI GPUs and the bridges above them):
 * this machine's, HWLOC_XMLFILE's, or the XML file xml. NULL with the reason
 * in err. */
static hwloc_topology_t load_with_io(const char *xml, char *err, size_t n)
{
    hwloc_topology_t t;
    if (xml) {
        FILE *f = fopen(xml, "r");
        if (!f) {
            snprintf(err, n, "cannot open the topology %s: %s", xml, strerror(errno));
            return NULL;
        }
        fclose(f);
    }
    if (hwloc_topology_init(&t) != 0) {
        snprintf(err, n, "hwloc cannot start: %s", strerror(errno));
        return NULL;
    }
    hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    /* PCI devices and their locality come from sysfs (hwloc's linux
     * component); the components that would add nothing we read are left
     * out: libpciaccess ("pci": the same devices, and memory it never frees,
     * which the sanitizer build reports), and those that open OpenCL, X
     * displays, CUDA, NVML, ROCm or Level Zero in every rank before it has
     * chosen its GPU. Names this hwloc does not have are refused; no matter. */
    static const char *const unused[] = {"pci", "opencl", "gl", "cuda", "nvml", "rsmi", "levelzero"};
    for (size_t i = 0; i < sizeof unused / sizeof *unused; i++)
        (void)hwloc_topology_set_components(t, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, unused[i]);
    if (xml && hwloc_topology_set_xml(t, xml) != 0) {
        int e = errno;
        if (e == EISDIR) snprintf(err, n, "the topology %s is a directory, not an hwloc XML file", xml);
        else
            snprintf(err, n,
                     "%s is not a valid hwloc XML topology (damaged, or not written by lstopo --of xml); "
                     "HWLOC_XML_VERBOSE=1 shows hwloc's reason",
                     xml);
        hwloc_topology_destroy(t);
        return NULL;
    }
    if (hwloc_topology_load(t) != 0) {
        const char *env = getenv("HWLOC_XMLFILE");
        if (xml) snprintf(err, n, "hwloc cannot load the topology %s: %s", xml, strerror(errno));
        else if (env) snprintf(err, n, "hwloc cannot load the topology of HWLOC_XMLFILE=%.200s", env);
        else snprintf(err, n, "hwloc cannot read the machine's topology");
        hwloc_topology_destroy(t);
        return NULL;
    }
    return t;
}

int binding_setup_gpu(int lr, int lsize, const char *const *node_pci, int apply, binding_info *out)
{
    memset(out, 0, sizeof *out);
    char err[512];
    hwloc_topology_t t = load_with_io(NULL, err, sizeof err);
    if (!t) {
        mlpf_errorf("rank %d (%s), local rank %d: %s", g_mpi.rank, g_mpi.host, lr, err);
        return -1;
    }
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    int rc = binding_plan_gpu(t, lr, lsize, node_pci, out, set);
    if (rc != 0) {
        mlpf_errorf("rank %d (%s), local rank %d: no GPU binding plan: %s", g_mpi.rank, g_mpi.host, lr,
                    out->locality);
    } else if (apply && !hwloc_topology_is_thissystem(t)) {
        const char *env = getenv("HWLOC_XMLFILE");
        fprintf(stderr, "mlpfbench: rank %d (%s), local rank %d: not binding: the topology is not this machine's%s%.200s%s\n",
                g_mpi.rank, g_mpi.host, lr, env ? " (HWLOC_XMLFILE=" : "", env ? env : "", env ? ")" : "");
    } else if (apply) {
        if (hwloc_set_cpubind(t, set, HWLOC_CPUBIND_PROCESS) != 0) {
            mlpf_errorf("rank %d (%s), local rank %d: cannot bind to cores %s (%s): %s", g_mpi.rank, g_mpi.host, lr,
                        out->cores, out->locality, strerror(errno));
            rc = -1;
        } else {
            out->bound = 1;
        }
    }
    if (hwloc_topology_is_thissystem(t)) read_binding(t, out);
    hwloc_bitmap_free(set);
    hwloc_topology_destroy(t);
    return rc;
}

int binding_topology_gpus(hwloc_topology_t t, binding_gpu *gpus, int max)
{
    int n = 0;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_pcidev(t, o)) != NULL) {
        unsigned cls = o->attr->pcidev.class_id;
        if (o->attr->pcidev.vendor_id != 0x10de || (cls != 0x0300 && cls != 0x0302)) continue;
        if (n < max) {
            binding_gpu *g = &gpus[n];
            snprintf(g->pci, sizeof g->pci, "%04x:%02x:%02x.%01x", o->attr->pcidev.domain, o->attr->pcidev.bus,
                     o->attr->pcidev.dev, o->attr->pcidev.func);
            const char *dev = hwloc_obj_get_info_by_name(o, "PCIDevice");
            if (dev) snprintf(g->name, sizeof g->name, "NVIDIA %.80s", dev);
            else snprintf(g->name, sizeof g->name, "NVIDIA [10de:%04x]", o->attr->pcidev.device_id);
        }
        n++;
    }
    return n;
}

#define PLAN_MAX_GPUS 256

int binding_print_plan(int lsize, int one_per_gpu, const char *topology_xml, const binding_gpu *gpus, int n_gpus)
{
    char err[512];
    hwloc_topology_t t = load_with_io(topology_xml, err, sizeof err);
    if (!t) {
        fprintf(stderr, "mlpfbench: info: %s\n", err);
        return -1;
    }
    binding_info b;
    memset(&b, 0, sizeof b);
    if (topo_counts(t, &b) != 0) {
        fprintf(stderr, "mlpfbench: info: the topology%s%s has no cores\n", topology_xml ? " " : "",
                topology_xml ? topology_xml : "");
        hwloc_topology_destroy(t);
        return -1;
    }
    static binding_gpu found[PLAN_MAX_GPUS];
    const char *what = "those CUDA reports";
    if (n_gpus < 0) {
        n_gpus = binding_topology_gpus(t, found, PLAN_MAX_GPUS);
        if (n_gpus > PLAN_MAX_GPUS) n_gpus = PLAN_MAX_GPUS;
        gpus = found;
        what = "NVIDIA PCI devices of the topology";
    }
    if (one_per_gpu && n_gpus > 0) lsize = n_gpus;
    if (lsize < 1) lsize = 1;

    printf("topology: %d package(s), %d NUMA node(s), %d core(s), %d hardware thread(s)%s%s\n", b.n_packages,
           b.n_numa, b.n_cores, b.n_pus, topology_xml ? ", from " : "", topology_xml ? topology_xml : "");
    printf("binding plan for %d rank(s) per node (--bind auto, --device cpu):\n", lsize);
    for (int r = 0; r < lsize; r++) {
        int first, count;
        plan(b.n_cores, r, lsize, &first, &count);
        printf("  local rank %d: cores %d-%d, %d thread(s)%s\n", r, first, first + count - 1, count,
               lsize > b.n_cores ? " (oversubscribed: cores shared)" : "");
    }
    if (n_gpus <= 0) {
        printf("GPU binding plan: no GPU (none usable through CUDA, no NVIDIA GPU in the topology)\n");
        hwloc_topology_destroy(t);
        return 0;
    }
    const char **pci = malloc((size_t)lsize * sizeof *pci);
    if (!pci) {
        fprintf(stderr, "mlpfbench: info: out of memory\n");
        hwloc_topology_destroy(t);
        return -1;
    }
    for (int r = 0; r < lsize; r++) pci[r] = gpus[r % n_gpus].pci;
    printf("GPU binding plan for %d rank(s) per node on %d GPU(s), %s (--device cuda):\n", lsize, n_gpus, what);
    for (int r = 0; r < lsize; r++) {
        binding_info g;
        int d = r % n_gpus;
        if (binding_plan_gpu(t, r, lsize, pci, &g, NULL) != 0) {
            printf("  GPU %d (%.31s, %.95s) -> local rank %d: no plan: %s\n", d, gpus[d].pci, gpus[d].name, r,
                   g.locality);
            continue;
        }
        char where[160];
        if (g.gpu_local) {
            /* "package 0 (cores 0-15), near GPU ...": the name before the bracket */
            const char *br = strstr(g.locality, " (");
            snprintf(where, sizeof where, "(%.*s)", br ? (int)(br - g.locality) : (int)strlen(g.locality),
                     g.locality);
        } else {
            snprintf(where, sizeof where, "(%.150s)", g.locality);
        }
        int on_gpu = lsize / n_gpus + (d < lsize % n_gpus); /* ranks r with r % n_gpus == d */
        printf("  GPU %d (%.31s, %.95s) -> local rank %d: cores %s %s, %d thread(s)%s\n", d, gpus[d].pci,
               gpus[d].name, r, g.cores, where, g.n_bound_cores,
               on_gpu > 1 ? " (GPU shared: --allow-shared-gpu)" : "");
    }
    for (int d = lsize; d < n_gpus; d++)
        printf("  GPU %d (%.31s, %.95s): no rank\n", d, gpus[d].pci, gpus[d].name);
    free(pci);
    hwloc_topology_destroy(t);
    return 0;
}
