#ifndef PYSTRIB_BUF_H
#define PYSTRIB_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include "util.h"

/*
 * A growable byte buffer, after git's strbuf and curl's dynbuf. `ptr` is
 * never NULL and always NUL-terminated, so text can be used directly. A
 * buffer may carry a cap (`max`, 0 = none): appending past it fails with -1
 * and sets `toobig`, so bodies from the network cannot grow without bound.
 */
struct buf {
	char *ptr;
	size_t len;
	size_t alloc;
	size_t max;
	int toobig;
};

extern char buf_empty[];
#define BUF_INIT { buf_empty, 0, 0, 0, 0 }

void buf_init(struct buf *b, size_t max);
/* Frees the contents; the buffer is empty and reusable after. */
void buf_release(struct buf *b);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);
/* Hands the memory to the caller (who frees it); the buffer is empty after. */
char *buf_detach(struct buf *b, size_t *len);
/* Ensures room for `extra` more bytes. 0, or -1 past the cap. */
int buf_grow(struct buf *b, size_t extra);

/* Appenders: 0 on success, -1 when the cap would be passed (nothing added). */
int buf_add(struct buf *b, const void *data, size_t len);
int buf_addstr(struct buf *b, const char *s);
int buf_addch(struct buf *b, char c);
int buf_addf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
int buf_vaddf(struct buf *b, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);

/* Shortens to len bytes (len <= b->len). */
void buf_setlen(struct buf *b, size_t len);
/* Removes trailing white space. */
void buf_rtrim(struct buf *b);

/*
 * Reads the whole file into b (appending). 0 on success, -1 with errno set
 * on I/O error, or with errno EFBIG when it passes the cap.
 */
int buf_read_file(struct buf *b, const char *path);

/*
 * Appends n bytes of s to b as valid UTF-8 (what jansson accepts, for JSON
 * and records): each invalid sequence becomes one U+FFFD, as Python's
 * decode(errors="replace") does; NUL counts as invalid. For text a host
 * sent, which may be any bytes.
 */
void buf_add_utf8(struct buf *b, const char *s, size_t n);

#endif
