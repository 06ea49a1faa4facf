#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct error_state {
	enum ps_exit kind;
	char *message;
	char *hint;
};

static _Thread_local struct error_state last;

static char *vfmt(const char *fmt, va_list ap) PRINTF_LIKE(1, 0);
static char *vfmt(const char *fmt, va_list ap)
{
	va_list cp;
	va_copy(cp, ap);
	int n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return xstrdup("(unformattable error message)");
	char *s = xmalloc((size_t)n + 1);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	return s;
}

void error_clear(void)
{
	free(last.message);
	free(last.hint);
	last.message = NULL;
	last.hint = NULL;
	last.kind = PS_EXIT_OK;
}

int error_set(enum ps_exit kind, const char *fmt, ...)
{
	va_list ap;
	error_clear();
	va_start(ap, fmt);
	last.message = vfmt(fmt, ap);
	va_end(ap);
	last.kind = kind;
	return -1;
}

int error_hint(const char *fmt, ...)
{
	va_list ap;
	free(last.hint);
	va_start(ap, fmt);
	last.hint = vfmt(fmt, ap);
	va_end(ap);
	return -1;
}

int error_wrap(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *ctx = vfmt(fmt, ap);
	va_end(ap);
	char *joined = xstrfmt("%s: %s", ctx, last.message ? last.message : "failed");
	free(ctx);
	free(last.message);
	last.message = joined;
	if (last.kind == PS_EXIT_OK)
		last.kind = PS_EXIT_RANK;
	return -1;
}

const char *error_message(void)
{
	return last.message ? last.message : "";
}

const char *error_hint_text(void)
{
	return last.hint;
}

enum ps_exit error_kind(void)
{
	return last.kind;
}

int error_report(void)
{
	if (!last.message)
		error_set(PS_EXIT_RANK, "internal error: a failure left no message");
	int code = last.kind == PS_EXIT_OK ? PS_EXIT_RANK : (int)last.kind;
	if (log_json) {
		event_emit("error", "{s:s,s:s?,s:i}", "message", last.message,
			   "hint", last.hint, "exit_code", code);
	}
	fprintf(stderr, "pystrib: %s\n", last.message);
	if (last.hint)
		fprintf(stderr, "hint: %s\n", last.hint);
	error_clear();
	return code;
}
