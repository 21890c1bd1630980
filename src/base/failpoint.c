#include "failpoint.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int failpoint(const char *name, long long step, int rank)
{
    const char *spec = getenv("MLPF_FAILPOINT");
    if (!spec || !*spec) return 0;
    size_t n = strlen(name);
    for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, name, n) != 0 || (p[n] && p[n] != '@' && p[n] != ':' && p[n] != ',')) continue;
        const char *q = p + n;
        if (*q == '@') {
            char *end;
            long long s = strtoll(q + 1, &end, 10);
            if (s != step) continue;
            q = end;
        }
        if (*q == ':' && atoi(q + 1) != rank) continue;
        return 1;
    }
    return 0;
}

void failpoint_stall(void)
{
    for (;;) pause();
}
