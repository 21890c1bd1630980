#include "guard.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "mpictx.h"

static struct {
    int pipe[2], running;
    double timeout, last;
    char where[128];
    double limit[3], wait_t0; /* per guard_wait kind; when the current wait began */
    int wait;
    char wait_what[96];
    void (*on_exit)(const char *why);
    int (*poll)(void *, char *, size_t);
    void (*abort_fn)(void *);
    void *watch_ctx;
    char device[160];
    pthread_t thread;
    pthread_mutex_t mu;
} g = {.pipe = {-1, -1}, .mu = PTHREAD_MUTEX_INITIALIZER};


static void on_signal(int sig)
{
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(g.pipe[1], &b, 1); /* async-signal-safe */
    (void)r;
}

/* Before the job ends from here: free the device's waiting kernels. */
static void abort_device(void)
{
    pthread_mutex_lock(&g.mu);
    void (*a)(void *) = g.abort_fn;
    void *ctx = g.watch_ctx;
    g.abort_fn = NULL;
    pthread_mutex_unlock(&g.mu);
    if (a) a(ctx);
}

static void *run(void *arg)
{
    (void)arg;
    struct pollfd p = {.fd = g.pipe[0], .events = POLLIN};
    while (g.running) {
        int n = poll(&p, 1, 1000);
        if (n > 0) {
            unsigned char sig = 0;
            if (read(g.pipe[0], &sig, 1) != 1 || sig == 0) break; /* 0: guard_stop */
            char why[512];
            snprintf(why, sizeof why, "rank %d (%.64s): terminated by signal %d (%.32s) at %.100s: the job "
                     "was cancelled or another rank failed",
                     g_mpi.rank, g_mpi.host, sig, strsignal(sig), g.where);
            fprintf(stderr, "mlpfbench: %s\n", why);
            if (g.on_exit) g.on_exit(why);
            abort_device();
            _exit(128 + sig);
        }
        pthread_mutex_lock(&g.mu);
        double now = mlpf_now(), idle = now - g.last, waited = now - g.wait_t0;
        int wait = g.wait;
        char where[128], what[96];
        snprintf(where, sizeof where, "%s", g.where);
        snprintf(what, sizeof what, "%s", g.wait_what);
        char dev[176] = "", failed[512];
        if (g.device[0]) snprintf(dev, sizeof dev, " on %s", g.device);
        /* under the lock: guard_watch(NULL) waits for it before the communicator goes */
        const int comm_failed = g.poll && g.poll(g.watch_ctx, failed, sizeof failed);
        pthread_mutex_unlock(&g.mu);
        if (comm_failed) {
            mlpf_fatal("%s%s, after %s%s%s: another rank failed or is gone", failed, dev, where,
                       wait == GUARD_COLLECTIVE ? ", waiting for " : "", wait == GUARD_COLLECTIVE ? what : "");
        }
        if (wait == GUARD_COLLECTIVE && g.limit[wait] > 0 && waited > g.limit[wait]) {
            mlpf_fatal("waited %.0f s in a collective (%s)%s after %s: another rank is stuck or gone "
                       "(--collective-timeout %g)", waited, what, dev, where, g.limit[wait]);
        }
        if (wait == GUARD_DATA && g.limit[wait] > 0 && waited > g.limit[wait])
            mlpf_fatal("waited %.0f s for data (%s) after %s: the reads are stuck (file system, or "
                       "another rank in the collective read; --data-timeout %g)",
                       waited, what, where, g.limit[wait]);
        if (g.timeout > 0) {
            if (idle > g.timeout) {
                mlpf_fatal("no progress for %.0f s after %s%s (a rank is stuck in a collective or "
                           "waiting for data; --timeout %g)", idle, where, dev, g.timeout);
            }
        }
    }
    return NULL;
}

void guard_start(double timeout_s, double data_s, double collective_s, void (*on_exit)(const char *why))
{
    if (pipe(g.pipe) != 0) return;
    g.timeout = timeout_s;
    g.limit[GUARD_DATA] = data_s;
    g.limit[GUARD_COLLECTIVE] = collective_s;
    g.wait = GUARD_NONE;
    g.on_exit = on_exit;
    g.last = mlpf_now();
    snprintf(g.where, sizeof g.where, "start-up");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    g.running = 1;
    pthread_create(&g.thread, NULL, run, NULL);
}

void guard_progress(const char *where)
{
    pthread_mutex_lock(&g.mu);
    g.last = mlpf_now();
    snprintf(g.where, sizeof g.where, "%s", where);
    pthread_mutex_unlock(&g.mu);
}

void guard_wait_begin(int kind, const char *what)
{
    pthread_mutex_lock(&g.mu);
    g.wait = kind;
    g.wait_t0 = mlpf_now();
    snprintf(g.wait_what, sizeof g.wait_what, "%s", what);
    pthread_mutex_unlock(&g.mu);
}

void guard_wait_end(void)
{
    pthread_mutex_lock(&g.mu);
    g.wait = GUARD_NONE;
    pthread_mutex_unlock(&g.mu);
}

void guard_watch(int (*poll_cb)(void *ctx, char *why, size_t n), void (*abort_fn)(void *ctx), void *ctx,
                 const char *device)
{
    pthread_mutex_lock(&g.mu);
    g.poll = poll_cb;
    g.abort_fn = abort_fn;
    g.watch_ctx = ctx;
    snprintf(g.device, sizeof g.device, "%s", device ? device : "");
    pthread_mutex_unlock(&g.mu);
    mlpf_set_abort_hook(abort_fn ? abort_device : NULL);
}

void guard_stop(void)
{
    if (!g.running) return;
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    g.running = 0;
    unsigned char z = 0;
    ssize_t r = write(g.pipe[1], &z, 1);
    (void)r;
    pthread_join(g.thread, NULL);
    close(g.pipe[0]);
    close(g.pipe[1]);
}
