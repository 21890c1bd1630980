/* Placement of a rank on its node with hwloc.
 *
 * CPU runs (binding_setup): the node's cores are split evenly among the ranks
 * on the node (local rank r of L takes cores [r C / L, (r+1) C / L)); with
 * more ranks than cores each rank gets one core, shared round robin.
 *
 * GPU runs (binding_setup_gpu): a rank takes cores near its GPU. The GPU's
 * locality is the CPU set of its first non-I/O ancestor in hwloc's tree (the
 * package or NUMA group its PCIe root hangs from); the ranks whose GPUs share
 * a locality split its cores evenly, in local-rank order (one core each,
 * round robin, when they outnumber the cores). A GPU that the topology does
 * not hold (an emulated device, a VM without PCI passthrough, I/O discovery
 * off) falls back to the CPU split, and the reason is kept in `locality`.
 *
 * Either way the whole process is bound, so OpenMP and OpenBLAS threads stay
 * inside the set, and the default thread count is its size. The topology is
 * this machine's, or the XML file named by HWLOC_XMLFILE (hwloc reads it);
 * a topology that is not this system's is never bound to. */
#ifndef MLPF_BINDING_H
#define MLPF_BINDING_H

typedef struct {
    int n_packages, n_numa, n_cores, n_pus;
    int first_core, n_bound_cores; /* the plan for this rank: logical core indices */
    int bound;                     /* binding applied */
    char cpus[256];                /* the rank's actual CPU set after binding, as a list (empty when unknown) */
    char gpu_pci[32];              /* the GPU's PCI bus id used (as hwloc writes it when found: 0000:17:00.0) */
    char locality[128];            /* where the cores came from, or why not from the GPU's locality */
    int gpu_local;                 /* 1 when the cores came from the GPU's locality */
    char cores[128];               /* the planned cores, logical indices as a list ("0-3") */
} binding_info;

/* Compute the plan for local rank lr of lsize and, if apply, bind to it.
 * Returns 0, or -1 with a message on stderr. */
int binding_setup(int lr, int lsize, int apply, binding_info *out);

/* Bind local rank lr of lsize to the cores nearest its GPU. node_pci: the
 * PCI bus ids ("0000:17:00.0", as cudaDeviceGetPCIBusId writes them; hex
 * digits of either case; NULL or "" when unknown) of the GPUs of ALL lsize
 * local ranks, by local rank (NULL: none known). apply: bind the process as
 * binding_setup does (not when the topology is not this system). 0, or -1
 * with a message on stderr. */
int binding_setup_gpu(int lr, int lsize, const char *const *node_pci, int apply, binding_info *out);

/* The planning part of binding_setup_gpu on an already-loaded topology (its
 * I/O devices kept: hwloc_topology_set_io_types_filter before the load), for
 * the tests and `info`: fills out (bound stays 0, cpus empty) and, when set
 * is not NULL, sets it to the PUs of the planned cores. 0, or -1 with the
 * reason in out->locality (bad arguments, a topology without cores). */
struct hwloc_topology;
struct hwloc_bitmap_s;
int binding_plan_gpu(struct hwloc_topology *t, int lr, int lsize, const char *const *node_pci, binding_info *out,
                     struct hwloc_bitmap_s *set);

/* A GPU in the plan that `info` prints: its PCI bus id and a name. */
typedef struct {
    char pci[32];
    char name[96];
} binding_gpu;

/* The NVIDIA GPUs of a loaded topology (PCI vendor 0x10de, class 0x0300
 * VGA or 0x0302 3D controller), in the topology's PCI order, at most max of
 * them in gpus; returns how many there are. */
int binding_topology_gpus(struct hwloc_topology *t, binding_gpu *gpus, int max);

/* Print the topology (this machine's, or the hwloc XML file topology_xml,
 * e.g. from `lstopo --of xml` on another machine), the CPU plan of lsize
 * local ranks, and the GPU-to-cores plan: gpus[0..n_gpus) as CUDA numbers
 * them, or with n_gpus < 0 the NVIDIA GPUs of the topology. one_per_gpu:
 * plan one rank per GPU when there are GPUs (lsize when there are none).
 * 0, or -1 with the reason on stderr (a topology that cannot be read). */
int binding_print_plan(int lsize, int one_per_gpu, const char *topology_xml, const binding_gpu *gpus, int n_gpus);

#endif
