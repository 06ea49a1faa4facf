#include "session_wire.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"

void session_reader_init(struct session_reader *r)
{
	memset(r, 0, sizeof(*r));
	buf_init(&r->in, 0);
}

void session_reader_release(struct session_reader *r)
{
	buf_release(&r->in);
	memset(r, 0, sizeof(*r));
}

void session_reader_feed(struct session_reader *r, const void *data, size_t len)
{
	/* What was handed out goes, so the buffer stays about one line. */
	if (r->off && r->off == r->in.len) {
		buf_reset(&r->in);
		r->off = 0;
	} else if (r->off > (64u << 10)) {
		memmove(r->in.ptr, r->in.ptr + r->off, r->in.len - r->off);
		buf_setlen(&r->in, r->in.len - r->off);
		r->off = 0;
	}
	buf_add(&r->in, data, len);
}

long long session_msg_bytes(const json_t *msg)
{
	json_t *b = json_object_get(msg, "bytes");
	if (!b || json_is_null(b))
		return 0;
	if (!json_is_integer(b) || json_integer_value(b) < 0)
		return -1;
	return json_integer_value(b);
}

static int next_message(struct session_reader *r, json_t **msg)
{
	const char *p = r->in.ptr + r->off;
	size_t avail = r->in.len - r->off;
	const char *nl = memchr(p, '\n', avail);
	json_error_t jerr;

	if (r->skipping) {
		r->off += nl ? (size_t)(nl - p) + 1 : avail;
		r->skipping = !nl;
		return SESSION_NEED_MORE;
	}
	if ((!nl && avail >= SESSION_LINE_MAX) || (nl && (size_t)(nl - p) + 1 > SESSION_LINE_MAX)) {
		r->off += nl ? (size_t)(nl - p) + 1 : avail;
		r->skipping = !nl;
		return error_set(PS_EXIT_REMOTE, "a session message is too large (more than %u bytes)",
				 SESSION_LINE_MAX);
	}
	if (!nl)
		return SESSION_NEED_MORE;
	json_t *j = json_loadb(p, (size_t)(nl - p), 0, &jerr);
	r->off += (size_t)(nl - p) + 1;
	if (!json_is_object(j)) {
		json_decref(j);
		return error_set(PS_EXIT_REMOTE, "a session message is not a JSON object: %s",
				 jerr.text[0] ? jerr.text : "not an object");
	}
	long long n = session_msg_bytes(j);
	if (n < 0) {
		json_decref(j);
		return error_set(PS_EXIT_REMOTE, "a session message has an invalid 'bytes'");
	}
	r->payload_left = (unsigned long long)n;
	*msg = j;
	return SESSION_MESSAGE;
}

int session_reader_next(struct session_reader *r, json_t **msg, const char **data,
			size_t *len)
{
	size_t avail = r->in.len - r->off;
	if (r->payload_left) {
		if (!avail)
			return SESSION_NEED_MORE;
		size_t n = avail < r->payload_left ? avail : (size_t)r->payload_left;
		*data = r->in.ptr + r->off;
		*len = n;
		r->off += n;
		r->payload_left -= n;
		return SESSION_PAYLOAD;
	}
	for (;;) {
		if (r->off == r->in.len)
			return SESSION_NEED_MORE;
		/* The end of a skipped line: the next line may be here already. */
		int was = r->skipping, item = next_message(r, msg);
		if (item != SESSION_NEED_MORE || !was)
			return item;
	}
}

int session_msg_line(const json_t *msg, struct buf *out)
{
	char *s = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);
	size_t n = s ? strlen(s) : 0;
	if (!s || n + 1 > SESSION_LINE_MAX) {
		free(s);
		return error_set(PS_EXIT_USAGE, "a session request is too large (more than %u bytes)",
				 SESSION_LINE_MAX);
	}
	buf_add(out, s, n);
	buf_addch(out, '\n');
	free(s);
	return 0;
}

/* One number of a SPEC at *p; advances *p. -1 when there is none. */
static long spec_number(const char **p)
{
	char *end;
	if (!isdigit((unsigned char)**p))
		return -1;
	errno = 0;
	long v = strtol(*p, &end, 10);
	if (errno || v > 1000000)
		return -1;
	*p = end;
	return v;
}

static int cmp_int(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? -1 : x > y;
}

/* The ranks of spec, in *v (*n of them), unsorted. 0 or -1. */
static int spec_ranks(const char *spec, int np, long **v, size_t *n)
{
	const char *p = spec;
	size_t cap = 0;
	while (*p) {
		long a = spec_number(&p), b = a;
		if (a >= 0 && *p == '-') {
			p++;
			b = spec_number(&p);
		}
		if (a < 0 || b < a || (*p && *p != ',') || (*p == ',' && !p[1]))
			return error_set(PS_EXIT_USAGE, "invalid rank list '%s'", spec),
			       error_hint("write ranks and ranges, e.g. --ranks 0,2-3");
		if (np > 0 && b >= np)
			return error_set(PS_EXIT_USAGE, "rank %ld is not in the session (ranks 0-%d)",
					 b, np - 1);
		for (long k = a; k <= b; k++) {
			if (*n == cap)
				*v = xrealloc(*v, (cap = cap ? 2 * cap : 8) * sizeof(**v));
			(*v)[(*n)++] = k;
		}
		if (*p == ',')
			p++;
	}
	if (!*n)
		return error_set(PS_EXIT_USAGE, "invalid rank list '%s'", spec),
		       error_hint("write ranks and ranges, e.g. --ranks 0,2-3");
	return 0;
}

int session_ranks_parse(const char *spec, int np, json_t **out)
{
	long *v = NULL;
	size_t n = 0;
	if (spec_ranks(spec, np, &v, &n) < 0) {
		free(v);
		return -1;
	}
	qsort(v, n, sizeof(*v), cmp_int);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		if (!i || v[i] != v[i - 1])
			json_array_append_new(a, json_integer(v[i]));
	free(v);
	*out = a;
	return 0;
}
