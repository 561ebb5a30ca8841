/*
 * killat: an LD_PRELOAD library for crash tests. It counts the calls of the process to fsync,
 * fdatasync, rename, ftruncate and unlink (whichever thread makes them: strace's
 * `inject=...:when=N` counts per thread, so with the exporter's worker threads it cannot aim
 * at the N-th commit of the process) and sends the process SIGKILL at the N-th one.
 *
 *   KILLAT_N=n           kill at the n-th counted call (unset: only count)
 *   KILLAT_AFTER=1       kill just after that call returned (default: just before it)
 *   KILLAT_COUNT=path    write the number of counted calls to `path` when the process exits
 *
 * Built by the tests with `cc -shared -fPIC` (tests/it/conformance.rs).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static atomic_long counted;
static long target = -1;
static int after = 0;

__attribute__((constructor)) static void killat_init(void) {
    const char *n = getenv("KILLAT_N");
    if (n) target = atol(n);
    const char *a = getenv("KILLAT_AFTER");
    after = a && a[0] == '1';
}

__attribute__((destructor)) static void killat_fini(void) {
    const char *path = getenv("KILLAT_COUNT");
    if (!path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%ld\n", atomic_load(&counted));
    fclose(f);
}

/* The number of this call; SIGKILL now if it is the target and the kill comes before it. */
static long before_call(void) {
    long n = atomic_fetch_add(&counted, 1) + 1;
    if (n == target && !after) kill(getpid(), SIGKILL);
    return n;
}

static void after_call(long n) {
    if (n == target && after) kill(getpid(), SIGKILL);
}

/* The C library's own `name`, found once. */
#define NEXT(name) \
    static __typeof__(&name) next_##name; \
    if (!next_##name) next_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

#define WRAP(call) \
    long n = before_call(); \
    __typeof__(call) r = call; \
    after_call(n); \
    return r

int fsync(int fd) {
    NEXT(fsync);
    WRAP(next_fsync(fd));
}

int fdatasync(int fd) {
    NEXT(fdatasync);
    WRAP(next_fdatasync(fd));
}

int rename(const char *from, const char *to) {
    NEXT(rename);
    WRAP(next_rename(from, to));
}

int ftruncate(int fd, off_t len) {
    NEXT(ftruncate);
    WRAP(next_ftruncate(fd, len));
}

int ftruncate64(int fd, off_t len) {
    NEXT(ftruncate64);
    WRAP(next_ftruncate64(fd, len));
}

int unlink(const char *path) {
    NEXT(unlink);
    WRAP(next_unlink(path));
}

int unlinkat(int dir, const char *path, int flags) {
    NEXT(unlinkat);
    WRAP(next_unlinkat(dir, path, flags));
}
