#include "buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char buf_empty[1];

void buf_init(struct buf *b, size_t max)
{
	b->ptr = buf_empty;
	b->len = 0;
	b->alloc = 0;
	b->max = max;
	b->toobig = 0;
}

void buf_release(struct buf *b)
{
	if (b->alloc)
		free(b->ptr);
	buf_init(b, b->max);
}

void buf_reset(struct buf *b)
{
	buf_setlen(b, 0);
	b->toobig = 0;
}

char *buf_detach(struct buf *b, size_t *len)
{
	char *p = b->alloc ? b->ptr : xstrdup("");
	if (len)
		*len = b->len;
	buf_init(b, b->max);
	return p;
}

int buf_grow(struct buf *b, size_t extra)
{
	if (b->max && (extra > b->max || b->len > b->max - extra)) {
		b->toobig = 1;
		return -1;
	}
	if (b->len + extra + 1 <= b->alloc)
		return 0;
	size_t want = b->len + extra + 1;
	size_t n = b->alloc ? b->alloc : 64;
	while (n < want)
		n = n < ((size_t)-1) / 2 ? n * 2 : want;
	if (b->alloc) {
		b->ptr = xrealloc(b->ptr, n);
	} else {
		b->ptr = xmalloc(n);
		b->ptr[0] = '\0';
	}
	b->alloc = n;
	return 0;
}

int buf_add(struct buf *b, const void *data, size_t len)
{
	if (buf_grow(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->ptr + b->len, data, len);
	b->len += len;
	b->ptr[b->len] = '\0';
	return 0;
}

int buf_addstr(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_addch(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	va_copy(cp, ap);
	int n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0 || buf_grow(b, (size_t)n) < 0)
		return -1;
	vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = buf_vaddf(b, fmt, ap);
	va_end(ap);
	return r;
}

void buf_setlen(struct buf *b, size_t len)
{
	if (!b->alloc)
		return;
	b->len = len;
	b->ptr[len] = '\0';
}

void buf_rtrim(struct buf *b)
{
	size_t n = b->len;
	while (n && (b->ptr[n - 1] == ' ' || b->ptr[n - 1] == '\t' ||
		     b->ptr[n - 1] == '\n' || b->ptr[n - 1] == '\r'))
		n--;
	buf_setlen(b, n);
}

int buf_read_file(struct buf *b, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int ret = -1, err = 0;
	for (;;) {
		size_t room = 8192;
		if (b->max && b->max - b->len < room)
			room = b->max - b->len;
		if (room == 0) {
			/* At the cap: fine only if the file ends here. */
			char c;
			ssize_t n = read(fd, &c, 1);
			if (n == 0)
				break;
			b->toobig = 1;
			err = n < 0 ? errno : EFBIG;
			goto out;
		}
		if (buf_grow(b, room) < 0) {
			err = EFBIG;
			goto out;
		}
		ssize_t n = read(fd, b->ptr + b->len, room);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = errno;
			goto out;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
		b->ptr[b->len] = '\0';
	}
	ret = 0;
out:
	close(fd);
	if (ret < 0)
		errno = err;
	return ret;
}

/*
 * The length of the well-formed UTF-8 sequence at s (at most n bytes), or
 * minus the length of its longest invalid prefix that could have begun
 * one (at least 1). Well-formed is what jansson accepts: no overlong
 * forms, no surrogates (U+D800..DFFF), nothing above U+10FFFF; NUL counts
 * as invalid too, since the text ends up in a C string.
 */
static long utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len, k;

	if (c > 0 && c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4;
	else
		return -1;
	/* The second byte's range is what rules out the overlong and the too big. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (k = 1; k < len && k < n; k++) {
		if (s[k] < lo || s[k] > hi)
			break;
		lo = 0x80;
		hi = 0xbf;
	}
	return k == len ? (long)len : -(long)k;
}

void buf_add_utf8(struct buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		long len = utf8_seq(u + i, n - i);
		if (len > 0) {
			buf_add(b, s + i, (size_t)len);
			i += (size_t)len;
		} else {
			buf_addstr(b, "\xef\xbf\xbd");
			i += (size_t)-len;
		}
	}
}
