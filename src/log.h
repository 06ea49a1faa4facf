#ifndef PYSTRIB_LOG_H
#define PYSTRIB_LOG_H

#include "util.h"

/*
 * Diagnostics go to stderr; stdout is kept for a command's result (a pushed
 * reference, rank output, a table) and, with --json, one JSON event a line.
 *
 * Nothing logged may contain a secret: no tokens, passwords or
 * Authorization headers, whatever the verbosity.
 */
extern int log_verbosity;	/* 0 quiet, 1 with -v, 2 with -vv */
extern int log_json;		/* --json: events on stdout */

extern atomic_ulong log_warnings;	/* how many log_warn calls so far */

void log_warn(const char *fmt, ...) PRINTF_LIKE(1, 2);	/* always shown */
void log_info(const char *fmt, ...) PRINTF_LIKE(1, 2);	/* shown with -v */
void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);	/* shown with -vv */

/*
 * With --json, writes one line {"event": TYPE, ...fields} to stdout and
 * flushes it. `fmt` and the arguments are a jansson json_pack() format for
 * an object ("{s:s,s:I}", ...). Without --json it does nothing.
 */
void event_emit(const char *type, const char *fmt, ...);

#endif
