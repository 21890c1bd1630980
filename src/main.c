/* mlpfbench: the MLPF distributed training benchmark. One binary, subcommands. */
#include <stdio.h>
#include <string.h>

int cmd_train(int argc, char **argv);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: mlpfbench <command> [options]\n"
            "\n"
            "Trains the MLPF particle-flow graph network (HEPiX benchmark configuration)\n"
            "and reports how fast and how well this machine trains it.\n"
            "\n"
            "commands:\n"
            "  train     train the model on generated events and report loss and speed\n"
            "\n"
            "'mlpfbench <command> --help' describes a command's options.\n");
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
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    fprintf(stderr, "mlpfbench: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
