/* libFuzzer harness: the train option parser on arbitrary argument vectors
 * (the input split at NUL or newline bytes). It must never crash, whatever
 * the words; refusals are fine. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int train_check_options(int argc, char **argv);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char buf[2048];
    char *argv[33] = {"train"};
    int argc = 1;
    size = size < sizeof buf - 1 ? size : sizeof buf - 1;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *p = buf;
    for (size_t i = 0; i <= size && argc < 32; i++)
        if (buf[i] == '\0' || buf[i] == '\n') {
            buf[i] = '\0';
            argv[argc++] = p;
            p = buf + i + 1;
        }
    train_check_options(argc, argv);
    return 0;
}
