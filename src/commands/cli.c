#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int cli_int(const char *flag, const char *text, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "mlpfbench: %s needs a whole number from %lld to %lld, got '%s'\n", flag,
                lo, hi, text ? text : "(nothing)");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_double(const char *flag, const char *text, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    /* decimal notation only (strtod would also take hex floats and "inf") */
    int plain = text && *text && strspn(text, "0123456789+-.eE") == strlen(text);
    double v = plain ? strtod(text, &end) : 0.0;
    if (!plain || end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < lo ||
        v > hi) {
        fprintf(stderr, "mlpfbench: %s needs a number from %g to %g, got '%s'\n", flag, lo, hi,
                text ? text : "(nothing)");
        return -1;
    }
    *out = v;
    return 0;
}

int cli_path(const char *flag, const char *text, const char *what, const char **out)
{
    if (!text || !*text) {
        fprintf(stderr, "mlpfbench: %s needs %s\n", flag, what);
        return -1;
    }
    *out = text;
    return 0;
}

int cli_preset(const char *flag, const char *text, const char **out)
{
    mlpf_config tmp;
    if (!text || mlpf_config_preset(text, &tmp) != 0) {
        fprintf(stderr, "mlpfbench: %s must be one of %s, got '%s'\n", flag, mlpf_config_preset_names(),
                text ? text : "(nothing)");
        return -1;
    }
    *out = text;
    return 0;
}

int cli_choice(const char *flag, const char *text, const char *choices, const char **out)
{
    /* choices: "a|b|c"; the message lists them as "a, b or c" */
    size_t n = text ? strlen(text) : 0;
    for (const char *c = choices; text && *c;) {
        const char *end = strchr(c, '|');
        size_t len = end ? (size_t)(end - c) : strlen(c);
        if (len == n && !strncmp(c, text, n)) {
            *out = text;
            return 0;
        }
        c += len + (end ? 1 : 0);
    }
    char list[256] = "";
    int k = 0, count = 1;
    for (const char *c = choices; *c; c++) count += *c == '|';
    for (const char *c = choices; *c; k++) {
        const char *end = strchr(c, '|');
        size_t len = end ? (size_t)(end - c) : strlen(c), at = strlen(list);
        snprintf(list + at, sizeof list - at, "%s%.*s", k == 0 ? "" : (k == count - 1 ? " or " : ", "), (int)len, c);
        c += len + (end ? 1 : 0);
    }
    fprintf(stderr, "mlpfbench: %s must be %s, got '%s'\n", flag, list, text ? text : "(nothing)");
    return -1;
}
