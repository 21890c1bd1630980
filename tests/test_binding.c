/* Unit tests of a rank's GPU and cores (src/dist/gpuplace.c, the GPU part
 * of src/dist/binding.c), against the hwloc XML topology of an 8-GPU node
 * (tests/fixtures/gpu-node-2x16-8gpu.xml, written by gpu_topology.py: 2
 * packages x 16 cores, GPUs 0-3 under package 0, 4-7 under package 1) and
 * the environment Slurm and CUDA set. */
#include <check.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binding.h"
#include "gpuplace.h"

Suite *binding_suite(void);

/* the fixture's GPUs, as the topology orders them (package 0, then 1) */
static const char *const GPU[8] = {"0000:1b:00.0", "0000:43:00.0", "0000:52:00.0", "0000:61:00.0",
                                   "0000:9d:00.0", "0000:c3:00.0", "0000:d1:00.0", "0000:df:00.0"};

/* the fixture, found from this file's path (the tests run from the repository root) */
static const char *fixture(void)
{
    static char path[4096];
    const char *src = __FILE__, *slash = strrchr(src, '/');
    snprintf(path, sizeof path, "%.*s%sfixtures/gpu-node-2x16-8gpu.xml", slash ? (int)(slash - src + 1) : 0, src,
             slash ? "" : "tests/");
    return path;
}

static hwloc_topology_t load_fixture(void)
{
    hwloc_topology_t t;
    ck_assert_int_eq(hwloc_topology_init(&t), 0);
    ck_assert_int_eq(hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_IMPORTANT), 0);
    ck_assert_msg(hwloc_topology_set_xml(t, fixture()) == 0 && hwloc_topology_load(t) == 0,
                  "hwloc cannot load the fixture %s", fixture());
    return t;
}

/* The plan of each of n ranks (GPU bus ids pci[0..n)), their PU sets in
 * set[]; checks the sets are pairwise disjoint when `disjoint`. */
static void plan_all(hwloc_topology_t t, int n, const char *const *pci, binding_info *b, hwloc_bitmap_t *set,
                     int disjoint)
{
    for (int r = 0; r < n; r++) {
        set[r] = hwloc_bitmap_alloc();
        ck_assert_msg(binding_plan_gpu(t, r, n, pci, &b[r], set[r]) == 0, "rank %d: %s", r, b[r].locality);
        ck_assert_int_eq(hwloc_bitmap_weight(set[r]), b[r].n_bound_cores); /* one PU per core here */
        for (int q = 0; disjoint && q < r; q++)
            ck_assert_msg(!hwloc_bitmap_intersects(set[q], set[r]), "ranks %d and %d share cores (%s, %s)", q, r,
                          b[q].cores, b[r].cores);
    }
}

/* The union of the sets is every core of the node. */
static void covers_all(hwloc_topology_t t, int n, hwloc_bitmap_t *set)
{
    hwloc_bitmap_t u = hwloc_bitmap_alloc();
    for (int r = 0; r < n; r++) hwloc_bitmap_or(u, u, set[r]);
    ck_assert_msg(hwloc_bitmap_isequal(u, hwloc_topology_get_topology_cpuset(t)), "the ranks leave cores unused");
    hwloc_bitmap_free(u);
}

static void free_sets(int n, hwloc_bitmap_t *set)
{
    for (int r = 0; r < n; r++) hwloc_bitmap_free(set[r]);
}

/* The package whose cpuset holds all of set: 0, 1, or -1. */
static int package_of(hwloc_topology_t t, hwloc_bitmap_t set)
{
    for (int p = 0; p < 2; p++)
        if (hwloc_bitmap_isincluded(set, hwloc_get_obj_by_type(t, HWLOC_OBJ_PACKAGE, p)->cpuset)) return p;
    return -1;
}

START_TEST(test_fixture_gpus)
{
    hwloc_topology_t t = load_fixture();
    binding_gpu g[16];
    ck_assert_int_eq(binding_topology_gpus(t, g, 16), 8);
    for (int d = 0; d < 8; d++) {
        ck_assert_str_eq(g[d].pci, GPU[d]);
        ck_assert_msg(strstr(g[d].name, "H100"), "GPU %d named '%s'", d, g[d].name);
    }
    ck_assert_int_eq(binding_topology_gpus(t, g, 3), 8); /* the count, whatever fits */
    binding_info b;
    ck_assert_int_eq(binding_plan_gpu(t, 0, 1, GPU, &b, NULL), 0);
    ck_assert_int_eq(b.n_packages, 2);
    ck_assert_int_eq(b.n_numa, 2);
    ck_assert_int_eq(b.n_cores, 32);
    ck_assert_int_eq(b.n_pus, 32);
    hwloc_topology_destroy(t);
}
END_TEST

START_TEST(test_eight_ranks_eight_gpus)
{
    hwloc_topology_t t = load_fixture();
    binding_info b[8];
    hwloc_bitmap_t set[8];
    plan_all(t, 8, GPU, b, set, 1);
    covers_all(t, 8, set);
    for (int r = 0; r < 8; r++) {
        char want[64], loc[128];
        snprintf(want, sizeof want, "%d-%d", 4 * r, 4 * r + 3);
        ck_assert_str_eq(b[r].cores, want);
        ck_assert_int_eq(b[r].first_core, 4 * r);
        ck_assert_int_eq(b[r].n_bound_cores, 4);
        ck_assert_int_eq(b[r].gpu_local, 1);
        ck_assert_int_eq(b[r].bound, 0);
        ck_assert_int_eq(package_of(t, set[r]), r / 4);
        ck_assert_str_eq(b[r].gpu_pci, GPU[r]);
        snprintf(loc, sizeof loc, "package %d (cores %s), near GPU %s", r / 4, r < 4 ? "0-15" : "16-31", GPU[r]);
        ck_assert_str_eq(b[r].locality, loc);
    }
    free_sets(8, set);
    hwloc_topology_destroy(t);
}
END_TEST

START_TEST(test_four_ranks_on_gpus_0_1_4_5)
{
    hwloc_topology_t t = load_fixture();
    const char *pci[4] = {GPU[0], GPU[1], GPU[4], GPU[5]};
    binding_info b[4];
    hwloc_bitmap_t set[4];
    plan_all(t, 4, pci, b, set, 1);
    covers_all(t, 4, set);
    static const char *const want[4] = {"0-7", "8-15", "16-23", "24-31"};
    for (int r = 0; r < 4; r++) {
        ck_assert_str_eq(b[r].cores, want[r]);
        ck_assert_int_eq(b[r].n_bound_cores, 8);
        ck_assert_int_eq(package_of(t, set[r]), r / 2);
    }
    free_sets(4, set);
    hwloc_topology_destroy(t);
}
END_TEST

/* Local rank order, not GPU order, decides the split within a package. */
START_TEST(test_rank_order_differs_from_gpu_order)
{
    hwloc_topology_t t = load_fixture();
    const char *pci[4] = {GPU[4], GPU[0], GPU[5], GPU[1]};
    binding_info b[4];
    hwloc_bitmap_t set[4];
    plan_all(t, 4, pci, b, set, 1);
    covers_all(t, 4, set);
    static const char *const want[4] = {"16-23", "0-7", "24-31", "8-15"};
    for (int r = 0; r < 4; r++) {
        ck_assert_str_eq(b[r].cores, want[r]);
        ck_assert_int_eq(package_of(t, set[r]), r % 2 == 0 ? 1 : 0);
    }
    ck_assert_str_eq(b[0].locality, "package 1 (cores 16-31), near GPU 0000:9d:00.0");
    free_sets(4, set);
    hwloc_topology_destroy(t);
}
END_TEST

/* 16 ranks, two on each GPU (device = local rank modulo 8): 8 ranks per
 * package, 2 cores each, in local-rank order. */
START_TEST(test_sixteen_ranks_share_eight_gpus)
{
    hwloc_topology_t t = load_fixture();
    const char *pci[16];
    for (int r = 0; r < 16; r++) pci[r] = GPU[r % 8];
    binding_info b[16];
    hwloc_bitmap_t set[16];
    plan_all(t, 16, pci, b, set, 1);
    covers_all(t, 16, set);
    for (int r = 0; r < 16; r++) {
        int pkg = (r % 8) / 4, place = (r / 8) * 4 + r % 4; /* among the package's ranks, by local rank */
        char want[32];
        snprintf(want, sizeof want, "%d-%d", 16 * pkg + 2 * place, 16 * pkg + 2 * place + 1);
        ck_assert_msg(!strcmp(b[r].cores, want), "rank %d: cores %s, expected %s", r, b[r].cores, want);
        ck_assert_int_eq(package_of(t, set[r]), pkg);
    }
    free_sets(16, set);
    hwloc_topology_destroy(t);
}
END_TEST

/* More ranks near a GPU than cores there: one core each, round robin, inside the locality. */
START_TEST(test_more_ranks_than_cores_near_the_gpu)
{
    hwloc_topology_t t = load_fixture();
    const char *pci[20];
    for (int r = 0; r < 20; r++) pci[r] = GPU[6];
    binding_info b[20];
    hwloc_bitmap_t set[20];
    plan_all(t, 20, pci, b, set, 0);
    for (int r = 0; r < 20; r++) {
        char want[16];
        snprintf(want, sizeof want, "%d", 16 + r % 16);
        ck_assert_str_eq(b[r].cores, want);
        ck_assert_int_eq(b[r].n_bound_cores, 1);
        ck_assert_msg(strstr(b[r].locality, "; 20 ranks share its 16 cores"), "%s", b[r].locality);
    }
    ck_assert(hwloc_bitmap_isequal(set[0], set[16]));
    free_sets(20, set);
    hwloc_topology_destroy(t);
}
END_TEST

/* A GPU the topology does not hold: the CPU plan, and the reason. */
START_TEST(test_unknown_gpu_falls_back)
{
    hwloc_topology_t t = load_fixture();
    const char *pci[4] = {GPU[0], "0000:00:00.0", "", NULL};
    static const char *const cpu_plan[4] = {"0-7", "8-15", "16-23", "24-31"};
    binding_info b;
    ck_assert_int_eq(binding_plan_gpu(t, 1, 4, pci, &b, NULL), 0);
    ck_assert_int_eq(b.gpu_local, 0);
    ck_assert_str_eq(b.cores, cpu_plan[1]);
    ck_assert_str_eq(b.locality, "the topology has no PCI device 0000:00:00.0; cores split as on a CPU node");
    ck_assert_str_eq(b.gpu_pci, "0000:00:00.0");
    for (int r = 2; r < 4; r++) {
        ck_assert_int_eq(binding_plan_gpu(t, r, 4, pci, &b, NULL), 0);
        ck_assert_int_eq(b.gpu_local, 0);
        ck_assert_str_eq(b.cores, cpu_plan[r]);
        ck_assert_str_eq(b.locality, "the GPU's PCI bus id is unknown; cores split as on a CPU node");
    }
    /* rank 0's GPU is known and alone in package 0: the whole package */
    ck_assert_int_eq(binding_plan_gpu(t, 0, 4, pci, &b, NULL), 0);
    ck_assert_int_eq(b.gpu_local, 1);
    ck_assert_str_eq(b.cores, "0-15");
    /* no bus ids at all, and strings that are not bus ids */
    ck_assert_int_eq(binding_plan_gpu(t, 3, 4, NULL, &b, NULL), 0);
    ck_assert_str_eq(b.cores, "24-31");
    ck_assert_int_eq(b.gpu_local, 0);
    const char *junk[2] = {"GPU-1b2c3d4e", "0000:1b:00"};
    for (int r = 0; r < 2; r++) {
        ck_assert_int_eq(binding_plan_gpu(t, r, 2, junk, &b, NULL), 0);
        ck_assert_int_eq(b.gpu_local, 0);
        ck_assert_msg(strstr(b.locality, "the topology has no PCI device"), "%s", b.locality);
    }
    hwloc_topology_destroy(t);
}
END_TEST

/* CUDA and NVML write hex digits in either case, NVML with an 8-digit domain. */
START_TEST(test_bus_id_forms)
{
    hwloc_topology_t t = load_fixture();
    static const char *const forms[] = {"0000:9D:00.0", "0000:9d:00.0", "00000000:9D:00.0", "9d:00.0"};
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        const char *pci[2] = {GPU[4], forms[i]};
        binding_info b;
        ck_assert_int_eq(binding_plan_gpu(t, 1, 2, pci, &b, NULL), 0);
        ck_assert_msg(b.gpu_local == 1, "%s: %s", forms[i], b.locality);
        ck_assert_str_eq(b.gpu_pci, "0000:9d:00.0");
        ck_assert_str_eq(b.cores, "24-31"); /* same package as rank 0's GPU, second half */
    }
    const char *mixed[2] = {"0000:C3:00.0", "0000:c3:00.0"}; /* the same GPU twice, in two spellings */
    binding_info b;
    ck_assert_int_eq(binding_plan_gpu(t, 0, 2, mixed, &b, NULL), 0);
    ck_assert_str_eq(b.cores, "16-23");
    hwloc_topology_destroy(t);
}
END_TEST

START_TEST(test_bad_arguments)
{
    hwloc_topology_t t = load_fixture();
    binding_info b;
    ck_assert_int_eq(binding_plan_gpu(t, 4, 4, GPU, &b, NULL), -1);
    ck_assert_msg(strstr(b.locality, "local rank 4 of 4"), "%s", b.locality);
    ck_assert_int_eq(binding_plan_gpu(t, 0, 0, GPU, &b, NULL), -1);
    ck_assert_int_eq(binding_plan_gpu(t, -1, 2, GPU, &b, NULL), -1);
    hwloc_topology_destroy(t);
}
END_TEST

/* binding_setup_gpu loads HWLOC_XMLFILE's topology as hwloc does, and does
 * not bind this process to another machine's cores. */
START_TEST(test_setup_gpu_from_hwloc_xmlfile)
{
    char *old = getenv("HWLOC_XMLFILE") ? strdup(getenv("HWLOC_XMLFILE")) : NULL;
    char *old_ts = getenv("HWLOC_THISSYSTEM") ? strdup(getenv("HWLOC_THISSYSTEM")) : NULL;
    setenv("HWLOC_XMLFILE", fixture(), 1);
    unsetenv("HWLOC_THISSYSTEM");
    binding_info b;
    int rc = binding_setup_gpu(5, 8, GPU, 1, &b);
    if (old) setenv("HWLOC_XMLFILE", old, 1);
    else unsetenv("HWLOC_XMLFILE");
    if (old_ts) setenv("HWLOC_THISSYSTEM", old_ts, 1);
    free(old);
    free(old_ts);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(b.n_cores, 32);
    ck_assert_int_eq(b.bound, 0);
    ck_assert_int_eq(b.gpu_local, 1);
    ck_assert_str_eq(b.cores, "20-23");
    ck_assert_str_eq(b.cpus, "");
}
END_TEST

/* This machine: no bus id known, plan only, the CPU split of its cores. */
START_TEST(test_setup_gpu_this_machine)
{
    binding_info cpu, gpu;
    ck_assert_int_eq(binding_setup(0, 1, 0, &cpu), 0);
    ck_assert_int_eq(binding_setup_gpu(0, 1, NULL, 0, &gpu), 0);
    ck_assert_int_eq(gpu.n_cores, cpu.n_cores);
    ck_assert_int_eq(gpu.n_bound_cores, cpu.n_cores);
    ck_assert_int_eq(gpu.first_core, 0);
    ck_assert_int_eq(gpu.gpu_local, 0);
    ck_assert_int_eq(gpu.bound, 0);
    ck_assert_msg(gpu.cpus[0] != '\0', "the current binding of this process is not read back");
}
END_TEST

/* ------------------------------------------------------------ gpuplace_choose */

static const char *const ENV[] = {"CUDA_VISIBLE_DEVICES", "SLURM_LOCALID",       "SLURM_STEP_TASKS_PER_NODE",
                                  "SLURM_NODEID",         "SLURM_STEP_GPUS",     "SLURM_JOB_GPUS",
                                  "SLURM_GPUS_PER_TASK",  "SLURM_GPUS_ON_NODE",  "GPU_DEVICE_ORDINAL"};
enum { N_ENV = sizeof ENV / sizeof *ENV };
static char *saved[N_ENV];
static int was_set[N_ENV];

/* each test starts with none of the variables, and the environment is put back after it */
static void env_save(void)
{
    for (int i = 0; i < N_ENV; i++) {
        const char *v = getenv(ENV[i]);
        was_set[i] = v != NULL;
        saved[i] = v ? strdup(v) : NULL;
        unsetenv(ENV[i]);
    }
}

static void env_restore(void)
{
    for (int i = 0; i < N_ENV; i++) {
        if (was_set[i]) setenv(ENV[i], saved[i], 1);
        else unsetenv(ENV[i]);
        free(saved[i]);
        saved[i] = NULL;
    }
}

/* srun's variables for a task of a step with `tasks` ("4(x2)") */
static void srun_task(const char *localid, const char *tasks, const char *nodeid)
{
    setenv("SLURM_LOCALID", localid, 1);
    setenv("SLURM_STEP_TASKS_PER_NODE", tasks, 1);
    if (nodeid) setenv("SLURM_NODEID", nodeid, 1);
}

START_TEST(test_choose_one_visible_gpu)
{
    gpu_placement p;
    char err[512] = "";
    setenv("CUDA_VISIBLE_DEVICES", "3", 1); /* what --gpus-per-task=1 / --gpu-bind leaves a task */
    srun_task("2", "4", NULL);
    ck_assert_int_eq(gpuplace_choose(2, 4, 1, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 0);
    ck_assert_int_eq(p.shared, 0);
    ck_assert_int_eq(p.local_index, 2);
    ck_assert_str_eq(p.source, "the only GPU visible to this rank (CUDA_VISIBLE_DEVICES=3)");
    unsetenv("CUDA_VISIBLE_DEVICES");
    ck_assert_int_eq(gpuplace_choose(0, 1, 1, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 0);
    ck_assert_msg(strstr(p.source, "CUDA_VISIBLE_DEVICES unset"), "%s", p.source);
}
END_TEST

START_TEST(test_choose_local_index)
{
    gpu_placement p;
    char err[512] = "";
    for (int lr = 0; lr < 4; lr++) {
        ck_assert_int_eq(gpuplace_choose(lr, 4, 4, 0, &p, err, sizeof err), 0);
        ck_assert_int_eq(p.device, lr);
        ck_assert_int_eq(p.local_index, lr);
        ck_assert_int_eq(p.shared, 0);
    }
    ck_assert_str_eq(p.source, "MPI local rank 3 of 4 visible GPUs (CUDA_VISIBLE_DEVICES unset)");
    setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7", 1);
    ck_assert_int_eq(gpuplace_choose(1, 2, 4, 0, &p, err, sizeof err), 0); /* more GPUs than ranks */
    ck_assert_int_eq(p.device, 1);
    ck_assert_str_eq(p.source, "MPI local rank 1 of 4 visible GPUs (CUDA_VISIBLE_DEVICES=4,5,6,7)");
}
END_TEST

START_TEST(test_choose_prefers_slurm_localid)
{
    gpu_placement p;
    char err[512] = "";
    srun_task("3", "4(x2)", "1");
    ck_assert_int_eq(gpuplace_choose(1, 4, 4, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 3);
    ck_assert_int_eq(p.local_index, 3);
    ck_assert_msg(!strncmp(p.source, "SLURM_LOCALID=3 of 4 visible GPUs", 33), "%s", p.source);
    /* uneven nodes: this one (SLURM_NODEID=2) has 2 tasks */
    srun_task("1", "4(x2),2", "2");
    ck_assert_int_eq(gpuplace_choose(0, 2, 8, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 1);
    /* the same count on every node: SLURM_NODEID not needed */
    unsetenv("SLURM_NODEID");
    srun_task("2", "4(x3)", NULL);
    ck_assert_int_eq(gpuplace_choose(0, 4, 4, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 2);
}
END_TEST

/* SLURM_LOCALID that does not describe this rank is not used. */
START_TEST(test_choose_ignores_foreign_slurm_localid)
{
    gpu_placement p;
    char err[512] = "";
    /* mpirun inside an allocation: one daemon per node, every rank inherits its SLURM_LOCALID=0 */
    srun_task("0", "1(x2)", "0");
    ck_assert_int_eq(gpuplace_choose(2, 4, 4, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 2);
    ck_assert_msg(strstr(p.source, "MPI local rank 2 of 4 visible GPUs") &&
                      strstr(p.source, "SLURM_LOCALID=0 not used: the step has 1 task(s) on this node, MPI 4"),
                  "%s", p.source);
    /* a batch script's SLURM_LOCALID without a step */
    unsetenv("SLURM_STEP_TASKS_PER_NODE");
    ck_assert_int_eq(gpuplace_choose(1, 4, 4, 0, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.device, 1);
    ck_assert_msg(strstr(p.source, "SLURM_STEP_TASKS_PER_NODE is not set"), "%s", p.source);
    /* out of range, not a number, unreadable task list, a node the list does not have */
    static const char *const bad[][3] = {{"7", "4", "0"}, {"x1", "4", "0"}, {"1", "4(y2)", "0"}, {"1", "4,2", "5"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        srun_task(bad[i][0], bad[i][1], bad[i][2]);
        ck_assert_int_eq(gpuplace_choose(0, 4, 4, 0, &p, err, sizeof err), 0);
        ck_assert_msg(p.device == 0 && strstr(p.source, "not used"), "case %zu: device %d, %s", i, p.device,
                      p.source);
    }
}
END_TEST

START_TEST(test_choose_too_few_gpus_refused)
{
    gpu_placement p;
    char err[512] = "";
    setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3", 1);
    ck_assert_int_eq(gpuplace_choose(5, 8, 4, 0, &p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "local rank 5 of 8 on this node has no GPU of its own: 4 visible "
                              "(CUDA_VISIBLE_DEVICES=0,1,2,3") &&
                      strstr(err, "start one rank per GPU or pass --allow-shared-gpu"),
                  "%s", err);
    ck_assert_int_eq(p.device, -1);
}
END_TEST

START_TEST(test_choose_shared_when_allowed)
{
    gpu_placement p;
    char err[512] = "";
    setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3", 1);
    for (int lr = 0; lr < 8; lr++) {
        ck_assert_int_eq(gpuplace_choose(lr, 8, 4, 1, &p, err, sizeof err), 0);
        ck_assert_int_eq(p.device, lr % 4);
        ck_assert_int_eq(p.shared, 1);
    }
    ck_assert_msg(strstr(p.source, "modulo 4 visible GPUs") && strstr(p.source, "--allow-shared-gpu"), "%s",
                  p.source);
    /* enough GPUs: allowing sharing shares nothing */
    ck_assert_int_eq(gpuplace_choose(3, 4, 4, 1, &p, err, sizeof err), 0);
    ck_assert_int_eq(p.shared, 0);
    ck_assert_int_eq(p.device, 3);
}
END_TEST

START_TEST(test_choose_no_gpu)
{
    gpu_placement p;
    char err[512] = "";
    setenv("CUDA_VISIBLE_DEVICES", "", 1);
    ck_assert_int_eq(gpuplace_choose(0, 1, 0, 1, &p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "no CUDA device is visible to local rank 0 of 1") &&
                      strstr(err, "CUDA_VISIBLE_DEVICES empty"),
                  "%s", err);
    unsetenv("CUDA_VISIBLE_DEVICES");
    setenv("SLURM_JOB_GPUS", "2,3", 1);
    setenv("SLURM_GPUS_ON_NODE", "2", 1);
    ck_assert_int_eq(gpuplace_choose(1, 2, -1, 0, &p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "CUDA_VISIBLE_DEVICES unset") && strstr(err, "SLURM_JOB_GPUS=2,3") &&
                      strstr(err, "SLURM_GPUS_ON_NODE=2"),
                  "%s", err);
    setenv("CUDA_VISIBLE_DEVICES", "GPU-0badc0de", 1);
    ck_assert_int_eq(gpuplace_choose(0, 1, 0, 0, &p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "CUDA_VISIBLE_DEVICES=GPU-0badc0de"), "%s", err);
    /* not a rank of the node */
    ck_assert_int_eq(gpuplace_choose(2, 2, 4, 0, &p, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "local rank 2 of 2"), "%s", err);
}
END_TEST

START_TEST(test_find_shared)
{
    enum { S = 48 };
    char ids[5][S];
    memset(ids, 0, sizeof ids);
    int a = -1, b = -1;
    for (int i = 0; i < 5; i++) snprintf(ids[i], S, "GPU-%08x-0000-0000-0000-000000000000", 0x1000 + i);
    ck_assert_int_eq(gpuplace_find_shared(&ids[0][0], 5, S, &a, &b), 0);
    snprintf(ids[4], S, "%s", ids[1]); /* ranks 1 and 4 on one GPU */
    snprintf(ids[3], S, "%s", ids[2]); /* and 2 and 3 */
    ck_assert_int_eq(gpuplace_find_shared(&ids[0][0], 5, S, &a, &b), 1);
    ck_assert_int_eq(a, 1);
    ck_assert_int_eq(b, 4);
    ck_assert_int_eq(gpuplace_find_shared(&ids[0][0], 4, S, &a, &b), 1); /* without rank 4 */
    ck_assert_int_eq(a, 2);
    ck_assert_int_eq(b, 3);
    /* empty ids (unknown) never match; 0 or 1 rank never shares */
    char none[3][S] = {"", "", "GPU-x"};
    ck_assert_int_eq(gpuplace_find_shared(&none[0][0], 3, S, &a, &b), 0);
    ck_assert_int_eq(gpuplace_find_shared(&ids[0][0], 1, S, &a, &b), 0);
    ck_assert_int_eq(gpuplace_find_shared(&ids[0][0], 0, S, &a, &b), 0);
    ck_assert_int_eq(gpuplace_find_shared(NULL, 3, S, &a, &b), 0);
    /* strings filling their stride without a terminating NUL are compared over the stride */
    const char packed[] = "abcdabceabcd";
    ck_assert_int_eq(gpuplace_find_shared(packed, 3, 4, &a, &b), 1);
    ck_assert_int_eq(a, 0);
    ck_assert_int_eq(b, 2);
    ck_assert_int_eq(gpuplace_find_shared(packed, 2, 4, &a, &b), 0);
    /* a prefix is not the same id */
    char pre[2][S] = {"GPU-1234", "GPU-12345"};
    ck_assert_int_eq(gpuplace_find_shared(&pre[0][0], 2, S, &a, &b), 0);
}
END_TEST

Suite *binding_suite(void)
{
    Suite *s = suite_create("binding");
    TCase *topo = tcase_create("gpu-topology");
    tcase_set_timeout(topo, 60);
    tcase_add_test(topo, test_fixture_gpus);
    tcase_add_test(topo, test_eight_ranks_eight_gpus);
    tcase_add_test(topo, test_four_ranks_on_gpus_0_1_4_5);
    tcase_add_test(topo, test_rank_order_differs_from_gpu_order);
    tcase_add_test(topo, test_sixteen_ranks_share_eight_gpus);
    tcase_add_test(topo, test_more_ranks_than_cores_near_the_gpu);
    tcase_add_test(topo, test_unknown_gpu_falls_back);
    tcase_add_test(topo, test_bus_id_forms);
    tcase_add_test(topo, test_bad_arguments);
    tcase_add_test(topo, test_setup_gpu_from_hwloc_xmlfile);
    tcase_add_test(topo, test_setup_gpu_this_machine);
    suite_add_tcase(s, topo);

    TCase *choose = tcase_create("gpu-choice");
    tcase_add_checked_fixture(choose, env_save, env_restore);
    tcase_add_test(choose, test_choose_one_visible_gpu);
    tcase_add_test(choose, test_choose_local_index);
    tcase_add_test(choose, test_choose_prefers_slurm_localid);
    tcase_add_test(choose, test_choose_ignores_foreign_slurm_localid);
    tcase_add_test(choose, test_choose_too_few_gpus_refused);
    tcase_add_test(choose, test_choose_shared_when_allowed);
    tcase_add_test(choose, test_choose_no_gpu);
    tcase_add_test(choose, test_find_shared);
    suite_add_tcase(s, choose);
    return s;
}
