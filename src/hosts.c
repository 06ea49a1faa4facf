#include "hosts.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"

void hosts_release(struct host_list *l)
{
	for (size_t i = 0; i < l->nr; i++) {
		free(l->v[i].user);
		free(l->v[i].host);
	}
	free(l->v);
	l->v = NULL;
	l->nr = 0;
}

/* A decimal number in [lo, hi] filling all of s[0..n), else -1. */
static int number(const char *s, size_t n, int lo, int hi)
{
	long v = 0;
	if (!n || n > 6)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v < lo || v > hi ? -1 : (int)v;
}

/* A host name or address: letters, digits, '.', '-', '_', ':' inside [...]. */
static int host_ok(const char *h, size_t n)
{
	if (!n || h[0] == '-')
		return 0;
	int bracket = h[0] == '[';
	if (bracket && (n < 3 || h[n - 1] != ']'))
		return 0;
	for (size_t i = bracket; i < n - bracket; i++) {
		unsigned char c = (unsigned char)h[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != '_' && !(bracket && c == ':'))
			return 0;
	}
	return 1;
}

/* One entry, s[0..n), into e. 0 or -1 (the caller names the entry). */
static int parse_entry(struct host_entry *e, const char *s, size_t n)
{
	const char *at = memchr(s, '@', n), *star = memchr(s, '*', n);
	const char *end = star ? star : s + n, *h = at ? at + 1 : s;
	if (at && (at == s || (star && star < at)))
		return -1;
	if (star && (e->slots = number(star + 1, (size_t)(s + n - star - 1), 1, 4096)) < 0)
		return -1;
	/* The port's colon: after "]" for IPv6, else the only one. */
	const char *colon = NULL;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		if (!rb)
			return -1;
		colon = rb + 1 < end ? rb + 1 : NULL;
		if (colon && *colon != ':')
			return -1;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
	}
	const char *hend = colon ? colon : end;
	if (!host_ok(h, (size_t)(hend - h)))
		return -1;
	if (colon && (e->port = number(colon + 1, (size_t)(end - colon - 1), 1, 65535)) < 0)
		return -1;
	if (at) {
		for (const char *p = s; p < at; p++)
			if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
				return -1;
		e->user = xstrndup(s, (size_t)(at - s));
	}
	e->host = xstrndup(h, (size_t)(hend - h));
	return 0;
}

static int same_host(const struct host_entry *a, const struct host_entry *b)
{
	return !strcmp(a->host, b->host) && (a->port ? a->port : 22) == (b->port ? b->port : 22);
}

int hosts_parse(struct host_list *l, const char *text)
{
	const char *p = text ? text : "";
	int ret = -1;
	hosts_release(l);
	while (*p) {
		p += strspn(p, ", \t\n");
		size_t n = strcspn(p, ", \t\n");
		if (!n)
			break;
		l->v = xrealloc(l->v, (l->nr + 1) * sizeof(*l->v));
		struct host_entry *e = &l->v[l->nr];
		memset(e, 0, sizeof(*e));
		if (parse_entry(e, p, n) < 0) {
			free(e->user);
			error_set(PS_EXIT_USAGE, "host '%.*s' in the hosts list is not valid", (int)n, p);
			error_hint("write [USER@]HOST[:PORT][*SLOTS], separated by commas "
				   "(root@10.0.0.1:22*2, gpu2*4)");
			goto out;
		}
		l->nr++;
		for (size_t i = 0; i + 1 < l->nr; i++)
			if (same_host(&l->v[i], e)) {
				error_set(PS_EXIT_USAGE, "host '%.*s' is twice in the hosts list", (int)n, p);
				error_hint("give each host once, with all its slots (HOST*4)");
				goto out;
			}
		p += n;
	}
	if (!l->nr) {
		error_set(PS_EXIT_USAGE, "the hosts list is empty");
		error_hint("write [USER@]HOST[:PORT][*SLOTS], separated by commas");
		goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		hosts_release(l);
	return ret;
}

int hosts_slots(const struct host_list *l)
{
	int sum = 0;
	for (size_t i = 0; i < l->nr; i++) {
		if (!l->v[i].slots)
			return 0;
		sum += l->v[i].slots;
	}
	return sum;
}

void hosts_dest(const struct host_entry *e, struct buf *out)
{
	if (e->user)
		buf_addf(out, "%s@", e->user);
	buf_addstr(out, e->host);
	if (e->port)
		buf_addf(out, ":%d", e->port);
}

void hosts_mpirun_list(const struct host_list *l, struct buf *out)
{
	for (size_t i = 0; i < l->nr; i++) {
		const struct host_entry *e = &l->v[i];
		/* mpirun takes an IPv6 address without its brackets. */
		size_t n = strlen(e->host);
		if (e->host[0] == '[')
			buf_addf(out, "%s%.*s", i ? "," : "", (int)(n - 2), e->host + 1);
		else
			buf_addf(out, "%s%s", i ? "," : "", e->host);
		if (e->slots)
			buf_addf(out, ":%d", e->slots);
	}
}
