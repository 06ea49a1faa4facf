#ifndef PYSTRIB_SESSION_WIRE_H
#define PYSTRIB_SESSION_WIRE_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"

/*
 * The framing of a session's hub.sock (docs/sessions.md): a message is one
 * line of JSON, at most SESSION_LINE_MAX bytes with its newline; one with
 * "bytes": N (N > 0) is followed by exactly N raw bytes (a pickle), handed
 * out in chunks as they come, never held whole. The same framing is what
 * `session serve` reads on stdin and writes on stdout (docs/events.md).
 */
#define SESSION_LINE_MAX (1u << 20)

struct session_reader {
	struct buf in;		/* received, not yet handed out, from `off` */
	size_t off;
	unsigned long long payload_left;	/* of the last message's bytes */
	int skipping;		/* in a line past the cap: dropped up to its newline */
};
void session_reader_init(struct session_reader *r);
void session_reader_release(struct session_reader *r);
/* Adds data that came. */
void session_reader_feed(struct session_reader *r, const void *data, size_t len);

enum session_item {
	SESSION_NEED_MORE = 0,	/* nothing complete yet: feed more */
	SESSION_MESSAGE = 1,	/* *msg: a message (caller decrefs) */
	SESSION_PAYLOAD = 2,	/* *data, *len: the next chunk of its bytes (valid
				 * until the next call) */
};
/*
 * The next thing in what was fed: SESSION_MESSAGE (its "bytes" follow as
 * SESSION_PAYLOAD chunks, as many as it takes), SESSION_PAYLOAD,
 * SESSION_NEED_MORE, or -1 with the error set: a line past
 * SESSION_LINE_MAX (the rest of it is dropped as it comes), not a JSON
 * object, or a bad "bytes". Reading may go on after -1.
 */
int session_reader_next(struct session_reader *r, json_t **msg, const char **data,
			size_t *len);

/* msg's line, compact, with its newline, appended to out. 0, or -1 (too large). */
int session_msg_line(const json_t *msg, struct buf *out);

/* The "bytes" of msg: 0 when absent; -1 when not a non-negative integer. */
long long session_msg_bytes(const json_t *msg);

/*
 * Parses a --ranks SPEC: rank numbers and ranges, "0,2-3", into a sorted
 * JSON array of distinct integers (caller decrefs). np > 0: each must be
 * below it. 0, or -1 with the error set (PS_EXIT_USAGE).
 */
int session_ranks_parse(const char *spec, int np, json_t **out);

#endif
