#ifndef PYSTRIB_PROGRESS_H
#define PYSTRIB_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "digest.h"

/*
 * Progress of blob uploads, three ways at once:
 *   - on a terminal (stderr), one bar per blob, redrawn in place at most
 *     10 times a second: short digest, bar, bytes sent of total, rate, ETA;
 *   - on a pipe, nothing, unless -v: one line when a blob starts and one
 *     when it is done (size, time, rate);
 *   - with --json, {"event":"blob"} lines on stdout (docs/events.md):
 *     state "uploading" when it starts and about once a second after,
 *     then "uploaded"; "exists" and "mounted" for blobs not sent.
 */
struct progress {
	FILE *out;		/* where bars and -v lines go (stderr) */
	int tty;		/* draw bars */
	char digest[DIGEST_LEN];
	uint64_t total, sent;
	double start, last_draw, last_event;
	int drawn;
};

/* Sets p up for out (stderr in pystrib): a bar when out is a terminal. */
void progress_init(struct progress *p, FILE *out);

/* A blob upload starts. */
void progress_begin(struct progress *p, const char *digest, uint64_t total);
/* sent bytes of it are out (registry_progress_fn shape: data is the progress). */
void progress_update(void *p, uint64_t sent, uint64_t total);
/* It is done (ok 1) or failed (ok 0: the bar line is ended, nothing else said). */
void progress_end(struct progress *p, int ok);

/* A blob that needed no upload: state "exists" or "mounted". */
void progress_skip(const struct progress *p, const char *digest, uint64_t size,
		   const char *state);

/* "12.3 MiB", "512 B" (appended to out). */
void progress_bytes(struct buf *out, uint64_t n);

/*
 * One bar line (without "\r" or newline) for width columns, appended to
 * out: "1a2b3c4d5e6f [#####     ]  12.3 MiB / 100.0 MiB  4.1 MiB/s  ETA 0:21".
 */
void progress_format(struct buf *out, const char *digest, uint64_t sent, uint64_t total,
		     double elapsed, int width);

#endif
