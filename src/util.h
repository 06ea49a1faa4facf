#ifndef PYSTRIB_UTIL_H
#define PYSTRIB_UTIL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "banned.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* Allocators that never return NULL: on exhaustion they print and abort. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xstrfmt(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Edit distance between a and b (for "did you mean" suggestions). */
size_t levenshtein(const char *a, const char *b);

/*
 * The candidate in cands[0..n) closest to word, or NULL when none is close
 * enough to be a plausible typo. Candidates may be NULL (skipped).
 */
const char *closest_word(const char *word, const char *const *cands, size_t n);

/* Expands a leading "~/" with $HOME. Returns a new string (caller frees). */
char *expand_home(const char *path);

/* Parses a whole decimal integer within [min, max]. 0 on success, -1 if not. */
int parse_long(const char *s, long min, long max, long *out);

/* Seconds since the epoch as a double, from CLOCK_MONOTONIC / CLOCK_REALTIME. */
double now_monotonic(void);
double now_wall(void);

/* Creates dir and its parents with the given mode. 0 or -1 (errno set). */
int mkdir_p(const char *dir, unsigned mode);

/*
 * Set by the SIGINT/SIGTERM handler that main installs; long operations
 * poll it and stop with PS_EXIT_INTERRUPTED.
 */
extern volatile sig_atomic_t interrupted;
void install_interrupt_handler(void);

#endif
