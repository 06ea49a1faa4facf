#ifndef PYSTRIB_UTIL_H
#define PYSTRIB_UTIL_H

#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
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
char *xstrvfmt(const char *fmt, va_list ap) PRINTF_LIKE(1, 0);

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
 * Writes len bytes of data to path atomically: to a temporary file beside it
 * (mode applied), fsynced, then renamed over path. Readers see the old file
 * or the new one, never part of one. 0, or -1 with a PS_EXIT_IO error naming
 * path (the temporary is removed).
 */
int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);

/*
 * The same, streamed: atomic_file_open creates the temporary "PATH.tmp-XXXXXX"
 * (mode applied) and leaves its descriptor in fd; the caller writes to fd,
 * then commits or aborts. Every function here returns 0 or -1 with a
 * PS_EXIT_IO error, and leaves f released whatever happens except after a
 * successful open, so `atomic_file_abort` under `out:` is always safe.
 */
struct atomic_file {
	int fd;		/* write the contents here; -1 when not open */
	char *path;	/* where atomic_file_commit puts them */
	char *tmp;	/* the temporary file, in path's directory */
};
#define ATOMIC_FILE_INIT { -1, NULL, NULL }

int atomic_file_open(struct atomic_file *f, const char *path, unsigned mode);
/* Fsyncs and closes the temporary and renames it over f->path. */
int atomic_file_commit(struct atomic_file *f);
/*
 * The same to another path, for contents whose name is known only once they
 * are written (a file named by its digest). path must be in the directory of
 * the path given to atomic_file_open, or the rename may fail (EXDEV).
 */
int atomic_file_commit_as(struct atomic_file *f, const char *path);
/* Closes and removes the temporary, if any; f is released. */
void atomic_file_abort(struct atomic_file *f);

/*
 * The cancel flag: set by the SIGINT/SIGTERM handler that main installs (and
 * by a thread that stops another's work); long operations poll it and stop
 * with PS_EXIT_INTERRUPTED. A lock-free C11 atomic, so any thread may read or
 * write it and a signal handler may set it, through these accessors.
 */
/* 1 when an interrupt was requested (and not cleared since), else 0. */
int interrupt_requested(void);
/* Requests an interrupt, as SIGINT would. */
void interrupt_set(void);
/* Clears the request. Returns whether one was pending, so no signal is lost
 * between looking and clearing. */
int interrupt_clear(void);
void install_interrupt_handler(void);

/*
 * Sleeps for secs, waking early when an interrupt is requested (before or
 * during the sleep). 0 after the whole sleep, or -1 with a
 * PS_EXIT_INTERRUPTED error ("interrupted").
 */
int sleep_interruptible(double secs);

#endif
