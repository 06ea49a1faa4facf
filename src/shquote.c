#include "shquote.h"

#include <string.h>

/*
 * Bare words are those no POSIX shell treats specially anywhere in a
 * command: no globbing, expansion, quoting, redirection, comment, tilde or
 * assignment ('=' is left out so that a first word is never taken for
 * VAR=value).
 */
static int is_bare(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9'))
			continue;
		if (!strchr("_@%+:,./-", c))
			return 0;
	}
	return 1;
}

static int add_quoted(struct buf *b, const char *arg)
{
	if (buf_addch(b, '\'') < 0)
		return -1;
	for (const char *p = arg; *p; p++) {
		if (*p == '\'') {
			if (buf_addstr(b, "'\\''") < 0)
				return -1;
		} else if (buf_addch(b, *p) < 0) {
			return -1;
		}
	}
	return buf_addch(b, '\'');
}

int shquote_arg(struct buf *out, const char *arg)
{
	size_t len = out->len;
	int r = is_bare(arg) ? buf_addstr(out, arg) : add_quoted(out, arg);
	if (r < 0)
		buf_setlen(out, len);
	return r;
}

int shquote_argv(struct buf *out, const char *const *argv)
{
	size_t len = out->len;
	for (size_t i = 0; argv[i]; i++) {
		if (out->len && buf_addch(out, ' ') < 0)
			goto fail;
		if (shquote_arg(out, argv[i]) < 0)
			goto fail;
	}
	return 0;
fail:
	buf_setlen(out, len);
	return -1;
}

int shquote_path(struct buf *out, const char *path)
{
	size_t len = out->len;
	if (path[0] != '~' || (path[1] && path[1] != '/'))
		return shquote_arg(out, path);
	if (buf_addstr(out, "\"$HOME\"") < 0)
		goto fail;
	if (path[1] == '/' && (buf_addch(out, '/') < 0 ||
			       (path[2] && shquote_arg(out, path + 2) < 0)))
		goto fail;
	return 0;
fail:
	buf_setlen(out, len);
	return -1;
}

char *shquote_command(const char *const *argv)
{
	struct buf b = BUF_INIT;
	shquote_argv(&b, argv);	/* no cap: cannot fail */
	return buf_detach(&b, NULL);
}
