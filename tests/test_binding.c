/* Unit tests of a rank's GPU (src/dist/gpuplace.c) against the environment
 * Slurm and CUDA set. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuplace.h"

Suite *binding_suite(void);

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
