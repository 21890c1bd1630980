/* mlpfbench: the MLPF distributed training benchmark. One binary, subcommands. */
#include <stdio.h>
#include <string.h>

#include "blas_core.h"
#include "dataset.h"
#include "mpictx.h"

int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_allreduce_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_gemm_bench(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int bmk_main(int argc, char **argv); /* bmk.c: helpers of scripts/mlpf-bmk.sh */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench <command> [options]\n"
            "\n"
            "Trains the MLPF particle-flow graph network (HEPiX benchmark configuration)\n"
            "and reports how fast and how well this machine trains it.\n"
            "\n"
            "commands:\n"
            "  generate  write a synthetic dataset of HDF5 shards\n"
            "  train     train the model on a dataset and report loss, accuracy and speed\n"
            "  allreduce-bench  time and check the gradient all-reduce alone (under mpirun)\n"
            "  info      the node's topology and the binding plan of the ranks\n"
            "  infer     time forward passes only (inference speed)\n"
            "  gemm-bench  the BLAS matrix-product rate at the model's shapes\n"
            "\n"
            "'mlpfbench <command> --help' describes a command's options. Every command that\n"
            "uses the BLAS (train, infer, gemm-bench, info) also takes --blas-core NAME: the\n"
            "OpenBLAS kernels to run (default: OpenBLAS's choice, corrected where it fell back\n"
            "to older kernels than this CPU runs; OPENBLAS_CORETYPE set also counts as yours).\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "__probe-shard")) return dataset_probe_main(argc, argv); /* no MPI */
    if (!strcmp(argv[1], "__blas-check")) return blas_check_main(argc, argv);     /* no MPI */
    if (!strncmp(argv[1], "__bmk-", 6)) return bmk_main(argc, argv);                /* no MPI */
    int (*cmd)(int, char **) = NULL;
    if (!strcmp(argv[1], "train")) cmd = cmd_train;
    else if (!strcmp(argv[1], "generate")) cmd = cmd_generate;
    else if (!strcmp(argv[1], "allreduce-bench")) cmd = cmd_allreduce_bench;
    else if (!strcmp(argv[1], "info")) cmd = cmd_info;
    else if (!strcmp(argv[1], "infer")) cmd = cmd_infer;
    else if (!strcmp(argv[1], "gemm-bench")) cmd = cmd_gemm_bench;
    if (!cmd) {
        fprintf(stderr, "mlpfbench: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
    }
    /* the BLAS kernels, before MPI_Init: this may restart the process */
    if (cmd == cmd_train || cmd == cmd_infer || cmd == cmd_gemm_bench || cmd == cmd_info)
        argc = blas_core_setup(argc, argv);
    mpictx_init(&argc, &argv);
    int rc = cmd(argc - 1, argv + 1);
    mpictx_finalize();
    return rc;
}
