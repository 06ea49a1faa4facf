#include "strvec.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Never written: a push first allocates an array of the vector's own. */
char *strvec_empty[] = { NULL };

void strvec_init(struct strvec *s)
{
	s->v = strvec_empty;
	s->nr = 0;
	s->alloc = 0;
}

const char *strvec_push_nodup(struct strvec *s, char *str)
{
	if (s->nr + 2 > s->alloc) {
		size_t alloc = s->alloc ? 2 * s->alloc : 16;
		char **v = s->alloc ? s->v : NULL;
		s->v = xrealloc(v, alloc * sizeof(*s->v));
		s->alloc = alloc;
	}
	s->v[s->nr++] = str;
	s->v[s->nr] = NULL;
	return str;
}

const char *strvec_push(struct strvec *s, const char *str)
{
	return strvec_push_nodup(s, xstrdup(str));
}

const char *strvec_pushf(struct strvec *s, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *str = xstrvfmt(fmt, ap);
	va_end(ap);
	return strvec_push_nodup(s, str);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void strvec_sort_uniq(struct strvec *s)
{
	size_t out = 0;
	if (!s->nr)
		return;
	qsort(s->v, s->nr, sizeof(*s->v), cmp_str);
	for (size_t i = 0; i < s->nr; i++) {
		if (out && !strcmp(s->v[out - 1], s->v[i]))
			free(s->v[i]);
		else
			s->v[out++] = s->v[i];
	}
	s->nr = out;
	s->v[out] = NULL;
}

char **strvec_detach(struct strvec *s, size_t *nr)
{
	char **v = s->alloc ? s->v : xcalloc(1, sizeof(*v));
	if (nr)
		*nr = s->nr;
	strvec_init(s);
	return v;
}

void strvec_release(struct strvec *s)
{
	for (size_t i = 0; i < s->nr; i++)
		free(s->v[i]);
	if (s->alloc)
		free(s->v);
	strvec_init(s);
}
