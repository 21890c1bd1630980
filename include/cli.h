/* Strict command-line number parsing: a bad value is an error that names the
 * flag, never a silent zero. */
#ifndef MLPF_CLI_H
#define MLPF_CLI_H

#include <stdint.h>

/* Parse a whole decimal integer in [lo, hi]; on error print a message naming
 * the flag and return -1. */
int cli_int(const char *flag, const char *text, long long lo, long long hi, long long *out);
int cli_double(const char *flag, const char *text, double lo, double hi, double *out);
/* A non-empty value (a path); `what` says what is expected, e.g. "a directory". */
int cli_path(const char *flag, const char *text, const char *what, const char **out);

/* One of `choices`, written "a|b|c" (the message says "a, b or c"). */
int cli_choice(const char *flag, const char *text, const char *choices, const char **out);

/* A model preset name (config.h). */
int cli_preset(const char *flag, const char *text, const char **out);

#endif
