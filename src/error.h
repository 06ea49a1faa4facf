#ifndef PYSTRIB_ERROR_H
#define PYSTRIB_ERROR_H

#include "util.h"

/*
 * Exit codes, one meaning each, documented in --help and README.md. Every
 * command returns one of these.
 */
enum ps_exit {
	PS_EXIT_OK = 0,
	PS_EXIT_RANK = 1,	/* the job ran and a rank failed */
	PS_EXIT_USAGE = 2,	/* usage or configuration error */
	PS_EXIT_REGISTRY = 3,	/* registry error */
	PS_EXIT_REMOTE = 4,	/* SSH or remote-host error */
	PS_EXIT_TIMEOUT = 5,	/* the job ran past --timeout */
	PS_EXIT_IO = 6,		/* local I/O error: a file, pipe or write on this machine failed */
	PS_EXIT_INTERRUPTED = 130,
};

/*
 * The last error, after libgit2's git_error_last(): the function that knows
 * what failed records it here and returns -1; callers pass -1 up (adding
 * context with error_wrap where it helps); the command reports it once with
 * error_report(). One record per thread.
 *
 * Messages follow git: lowercase, the failing thing first, the subject in
 * '...', no full stop. A hint says what to do next, where that is knowable.
 * Never put a secret into either.
 */
int error_set(enum ps_exit kind, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* Attaches (or replaces) the hint of the current error. Returns -1. */
int error_hint(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Prefixes the current message: "<context>: <message>". Returns -1. */
int error_wrap(const char *fmt, ...) PRINTF_LIKE(1, 2);

const char *error_message(void);	/* "" when there is no error */
const char *error_hint_text(void);	/* NULL when none */
enum ps_exit error_kind(void);
void error_clear(void);

/*
 * Prints the current error to stderr ("pystrib: MESSAGE" and "hint: HINT"),
 * or as an {"event":"error"} line with --json, and returns its exit code.
 * With no error recorded it reports an internal error and returns 1.
 */
int error_report(void);

#endif
