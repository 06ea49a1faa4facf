#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>

int log_verbosity;
int log_json;
atomic_ulong log_warnings;

static void vlog(const char *prefix, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);
static void vlog(const char *prefix, const char *fmt, va_list ap)
{
	fputs(prefix, stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	log_warnings++;
	va_start(ap, fmt);
	vlog("pystrib: warning: ", fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	if (log_verbosity < 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("pystrib: ", fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	if (log_verbosity < 2)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog("pystrib: debug: ", fmt, ap);
	va_end(ap);
}

void event_emit(const char *type, const char *fmt, ...)
{
	if (!log_json)
		return;
	va_list ap;
	va_start(ap, fmt);
	json_error_t err;
	json_t *obj = fmt ? json_vpack_ex(&err, 0, fmt, ap) : json_object();
	va_end(ap);
	if (!obj) {
		fprintf(stderr, "pystrib: internal error: event '%s': %s\n", type, err.text);
		return;
	}
	json_t *line = json_object();
	json_object_set_new(line, "event", json_string(type));
	json_object_update(line, obj);
	json_decref(obj);
	char *s = json_dumps(line, JSON_COMPACT);
	json_decref(line);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		fflush(stdout);
		free(s);
	}
}
