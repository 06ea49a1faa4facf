#ifndef PYSTRIB_PROGRESS_H
#define PYSTRIB_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "digest.h"

/*
 * Progress of blob uploads, three ways at once. Each blob has a label
 * that says what it is ("base layer 3/7", "project", "cell", "config")
 * and a role for --json ("base", "project", "cell", "config"):
 *   - on a terminal (stderr), one bar per blob sent, redrawn in place at
 *     most 10 times a second: label, bar, bytes sent of total, rate, ETA;
 *   - on a pipe, one line per large blob (PROGRESS_LARGE or more) when it
 *     is sent: label, size, time, rate; with -v also its digest, and a
 *     line for every blob, sent or not;
 *   - with --json, {"event":"blob"} lines on stdout (docs/events.md):
 *     state "uploading" when it starts and about once a second after,
 *     then "uploaded"; "exists" and "mounted" for blobs not sent; nothing
 *     on stderr then.
 * The end of a stage (the push, the pull) is one line on stderr, terminal
 * or pipe, unless --json: progress_stage.
 */

/* On a pipe, a blob this large (1 MiB) has its own line. */
#define PROGRESS_LARGE (1u << 20)
#define PROGRESS_LABEL_MAX 64

struct progress {
	FILE *out;		/* where bars and lines go (stderr) */
	int tty;		/* draw bars */
	char label[PROGRESS_LABEL_MAX];
	char role[16];
	char digest[DIGEST_LEN];
	uint64_t total, sent;
	double start, last_draw, last_event;
	int drawn;
	unsigned kept_blobs;	/* blobs the registry had (or mounted) */
	uint64_t kept_bytes;
};

/* Sets p up for out (stderr in pystrib): a bar when out is a terminal. */
void progress_init(struct progress *p, FILE *out);

/*
 * A blob upload starts. label: what it is, shown ("base layer 3/7",
 * "cell"); role: for the events ("base", "cell"; NULL: none).
 */
void progress_begin(struct progress *p, const char *label, const char *role,
		    const char *digest, uint64_t total);
/* sent bytes of it are out (registry_progress_fn shape: data is the progress). */
void progress_update(void *p, uint64_t sent, uint64_t total);
/* It is done (ok 1) or failed (ok 0: the bar line is ended, nothing else said). */
void progress_end(struct progress *p, int ok);

/* A blob that needed no upload: state "exists" or "mounted" (counted in kept_*). */
void progress_skip(struct progress *p, const char *label, const char *role,
		   const char *digest, uint64_t size, const char *state);

/* The end of a stage: "pystrib: " and the printf-style text, unless --json. */
void progress_stage(FILE *out, const char *fmt, ...)
	PRINTF_LIKE(2, 3);

/* "12.3 MiB", "512 B" (appended to out). */
void progress_bytes(struct buf *out, uint64_t n);

/*
 * One bar line (without "\r" or newline) for width columns, appended to
 * out: "project          [#####     ]  12.3 MiB / 100.0 MiB  4.1 MiB/s  ETA 0:21".
 */
void progress_format(struct buf *out, const char *label, uint64_t sent, uint64_t total,
		     double elapsed, int width);

/*
 * The pull of an image by a remote engine, from its pull events: the
 * layers it names, how far each got. On a terminal one bar for all of
 * them ("pull 1/3 layers", bytes downloaded of the sizes known so far);
 * on a pipe one line per layer pulled; with --json {"event":"pull"}
 * lines (each change of a layer's state, and its progress about once a
 * second). pull_progress_end then says how it went in one line.
 */
enum pull_state {
	PULL_WAITING,		/* named, not started */
	PULL_DOWNLOADING,
	PULL_DOWNLOADED,	/* verified, not yet extracted */
	PULL_EXTRACTING,
	PULL_DONE,		/* pulled */
	PULL_EXISTS,		/* the host had it */
};

struct pull_layer {
	char id[72];		/* as the engine names it: 12 hex digits */
	enum pull_state state;
	uint64_t current, total;	/* of its download (total 0: not known yet) */
	double start;
};

struct pull_progress {
	FILE *out;
	int tty;
	struct pull_layer *layers;
	size_t nlayers, alloc;
	double start, last_draw, last_event;
	int drawn;
};

void pull_progress_init(struct pull_progress *pp, FILE *out);
/*
 * What the engine said about layer id: its new state and, when known
 * (total > 0), how far the download or extraction is. Ids past 256
 * layers are ignored.
 */
void pull_progress_layer(struct pull_progress *pp, const char *id, enum pull_state state,
			 uint64_t current, uint64_t total);
/* The pull ended (ok 1) or failed (ok 0): the bar is ended, and with ok one line. */
void pull_progress_end(struct pull_progress *pp, int ok);
void pull_progress_release(struct pull_progress *pp);

/* The state's name in events: "waiting", "downloading", ..., "done", "exists". */
const char *pull_state_name(enum pull_state s);

#endif
