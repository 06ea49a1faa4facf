#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "error.h"
#include "ref.h"

#define NAME_MAX_LEN 255

static int is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static int is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* One path component: [a-z0-9]+ ((. | _ | __ | -+) [a-z0-9]+)* */
static int component_valid(const char *s, size_t n)
{
	size_t i = 0;
	if (!n || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return 0;
	while (i < n) {
		if (is_lower_alnum(s[i])) {
			i++;
			continue;
		}
		size_t j = i;
		if (s[i] == '.') {
			j++;
		} else if (s[i] == '_') {
			j++;
			if (j < n && s[j] == '_')
				j++;
		} else if (s[i] == '-') {
			while (j < n && s[j] == '-')
				j++;
		} else {
			return 0;
		}
		if (j >= n || !is_lower_alnum(s[j]))
			return 0;
		i = j;
	}
	return 1;
}

int ref_repository_valid(const char *repo)
{
	const char *p = repo;
	if (!*repo || strlen(repo) > NAME_MAX_LEN)
		return 0;
	for (;;) {
		size_t n = strcspn(p, "/");
		if (!component_valid(p, n))
			return 0;
		if (!p[n])
			return 1;
		p += n + 1;
	}
}

int ref_tag_valid(const char *tag)
{
	size_t n = strlen(tag);
	if (!n || n > 128 || !(is_alnum(tag[0]) || tag[0] == '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!(is_alnum(tag[i]) || tag[i] == '_' || tag[i] == '.' || tag[i] == '-'))
			return 0;
	return 1;
}

/* DNS labels joined by dots: [A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])? */
static int hostname_valid(const char *s, size_t n)
{
	size_t i = 0;
	if (!n || n > 253)
		return 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != '.')
			j++;
		if (j == i || !is_alnum(s[i]) || !is_alnum(s[j - 1]))
			return 0;
		for (size_t k = i; k < j; k++)
			if (!is_alnum(s[k]) && s[k] != '-')
				return 0;
		if (j == n)
			return 1;
		i = j + 1;
		if (i == n)
			return 0;
	}
	return 1;
}

int ref_registry_valid(const char *s)
{
	size_t n = strlen(s), host_len;
	const char *colon;

	if (!n || n > 260)
		return 0;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close == s + 1)
			return 0;
		for (const char *p = s + 1; p < close; p++)
			if (!strchr("0123456789abcdefABCDEF:.", *p))
				return 0;
		colon = close[1] ? close + 1 : NULL;
		if (colon && *colon != ':')
			return 0;
		host_len = 0;
	} else {
		colon = strchr(s, ':');
		host_len = colon ? (size_t)(colon - s) : n;
		if (!hostname_valid(s, host_len))
			return 0;
	}
	if (colon) {
		long port;
		if (parse_long(colon + 1, 1, 65535, &port) < 0 || colon[1] == '+' || colon[1] == '-' ||
		    colon[1] == ' ')
			return 0;
	}
	return 1;
}

const char *ref_api_host(const char *registry)
{
	return strcmp(registry, "docker.io") ? registry : "registry-1.docker.io";
}

static int bad(const char *s, const char *why)
{
	error_set(PS_EXIT_USAGE, "invalid image reference '%s': %s", s, why);
	return error_hint("write it as REGISTRY/REPOSITORY:TAG, like 127.0.0.1:5000/team/base:bookworm");
}

int image_ref_parse(struct image_ref *r, const char *s)
{
	const char *rest = s, *slash, *at, *colon;
	char *registry = NULL, *repo = NULL, *tag = NULL, *digest = NULL;

	if (!*s)
		return bad(s, "it is empty");
	if (strlen(s) > 1024)
		return bad("...", "it is too long");
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
			return bad(*p == ' ' ? s : "...",
				   "it contains a space or a control or non-ASCII character");

	slash = strchr(s, '/');
	if (slash) {
		size_t n = (size_t)(slash - s);
		if (memchr(s, '.', n) || memchr(s, ':', n) || memchr(s, '[', n) ||
		    (n == 9 && !memcmp(s, "localhost", 9))) {
			registry = xstrndup(s, n);
			rest = slash + 1;
			if (!ref_registry_valid(registry)) {
				free(registry);
				return bad(s, "the registry part is not HOST or HOST:PORT");
			}
		}
	}
	at = strchr(rest, '@');
	if (at) {
		digest = xstrdup(at + 1);
		if (!digest_valid(digest)) {
			free(registry);
			free(digest);
			return bad(s, "the digest is not sha256: and 64 lowercase hex digits");
		}
	}
	colon = memchr(rest, ':', at ? (size_t)(at - rest) : strlen(rest));
	if (colon) {
		tag = xstrndup(colon + 1, at ? (size_t)(at - colon - 1) : strlen(colon + 1));
		if (!ref_tag_valid(tag)) {
			free(registry);
			free(digest);
			free(tag);
			return bad(s, "the tag may hold only letters, digits, '_', '.' and '-' "
				   "(not first), at most 128");
		}
	}
	repo = xstrndup(rest, colon ? (size_t)(colon - rest) : at ? (size_t)(at - rest) : strlen(rest));
	if (!registry || !strcmp(registry, "index.docker.io") ||
	    !strcmp(registry, "registry-1.docker.io")) {
		free(registry);
		registry = xstrdup("docker.io");
	}
	if (!strcmp(registry, "docker.io") && !strchr(repo, '/')) {
		char *lib = xstrfmt("library/%s", repo);
		free(repo);
		repo = lib;
	}
	if (!ref_repository_valid(repo)) {
		free(registry);
		free(repo);
		free(tag);
		free(digest);
		return bad(s, "the repository must be lowercase letters and digits, "
			   "separated by '/', '.', '_' or '-'");
	}
	if (!tag && !digest)
		tag = xstrdup("latest");
	r->registry = registry;
	r->repository = repo;
	r->tag = tag;
	r->digest = digest;
	return 0;
}

void image_ref_release(struct image_ref *r)
{
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	memset(r, 0, sizeof(*r));
}

char *image_ref_string(const struct image_ref *r)
{
	return xstrfmt("%s/%s%s%s%s%s", r->registry, r->repository, r->tag ? ":" : "",
		       r->tag ? r->tag : "", r->digest ? "@" : "", r->digest ? r->digest : "");
}

char *ref_pull_reference(const char *pinned, const char *repository, const char *digest,
			 const char *pull_registry)
{
	if (!pull_registry || !*pull_registry)
		return xstrdup(pinned);
	const char *p = strstr(pull_registry, "://");
	p = p ? p + 3 : pull_registry;
	size_t n = strlen(p);
	while (n && p[n - 1] == '/')
		n--;
	return xstrfmt("%.*s/%s@%s", (int)n, p, repository, digest);
}

char *ref_registry_part(const char *ref)
{
	return xstrndup(ref, strcspn(ref, "/"));
}

char *ref_pinned(const char *reference)
{
	struct image_ref r;
	if (image_ref_parse(&r, reference) < 0) {
		error_clear();
		return xstrdup(reference);
	}
	if (r.digest) {
		free(r.tag);
		r.tag = NULL;
	}
	char *s = image_ref_string(&r);
	image_ref_release(&r);
	return s;
}
