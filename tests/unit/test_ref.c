/*
 * Unit tests for ref.c: image references as docker writes them, the
 * normalisation to docker.io/library, and the strict grammar (every
 * rejection is a PS_EXIT_USAGE error naming what is wrong).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "ref.h"
#include "util.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good {
	const char *in, *registry, *repository, *tag, *digest, *canonical;
};

static const struct good goods[] = {
	{ "debian", "docker.io", "library/debian", "latest", NULL, "docker.io/library/debian:latest" },
	{ "debian:bookworm", "docker.io", "library/debian", "bookworm", NULL, NULL },
	{ "team/cells", "docker.io", "team/cells", "latest", NULL, NULL },
	{ "docker.io/debian", "docker.io", "library/debian", "latest", NULL, NULL },
	{ "index.docker.io/library/debian:12", "docker.io", "library/debian", "12", NULL, NULL },
	{ "registry-1.docker.io/x/y", "docker.io", "x/y", "latest", NULL, NULL },
	{ "127.0.0.1:5000/pystrib/base:bookworm", "127.0.0.1:5000", "pystrib/base", "bookworm",
	  NULL, "127.0.0.1:5000/pystrib/base:bookworm" },
	{ "localhost/a", "localhost", "a", "latest", NULL, NULL },
	{ "localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", NULL, NULL },
	{ "ghcr.io/org/img@sha256:" D64, "ghcr.io", "org/img", NULL, "sha256:" D64,
	  "ghcr.io/org/img@sha256:" D64 },
	{ "ghcr.io/org/img:v1@sha256:" D64, "ghcr.io", "org/img", "v1", "sha256:" D64,
	  "ghcr.io/org/img:v1@sha256:" D64 },
	{ "[::1]:5000/a:b", "[::1]:5000", "a", "b", NULL, NULL },
	{ "Registry.Example.COM/a", "Registry.Example.COM", "a", "latest", NULL, NULL },
	{ "a.b/x.y_z__w-v---u/q", "a.b", "x.y_z__w-v---u/q", "latest", NULL, NULL },
	{ "r.io/a:_Tag.With-Chars_", "r.io", "a", "_Tag.With-Chars_", NULL, NULL },
	/* Without a '.', ':' or "localhost", the first component is a path. */
	{ "team/sub/img:1", "docker.io", "team/sub/img", "1", NULL, NULL },
	{ "host:5000", "docker.io", "library/host", "5000", NULL, NULL },
};

static void parses_and_normalises(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(goods); i++) {
		const struct good *g = &goods[i];
		struct image_ref r;
		if (image_ref_parse(&r, g->in) < 0)
			fail_msg("'%s': %s", g->in, error_message());
		assert_string_equal(r.registry, g->registry);
		assert_string_equal(r.repository, g->repository);
		if (g->tag)
			assert_string_equal(r.tag, g->tag);
		else
			assert_null(r.tag);
		if (g->digest)
			assert_string_equal(r.digest, g->digest);
		else
			assert_null(r.digest);
		char *s = image_ref_string(&r);
		if (g->canonical)
			assert_string_equal(s, g->canonical);
		/* The canonical string parses back to the same thing. */
		struct image_ref again;
		assert_int_equal(image_ref_parse(&again, s), 0);
		assert_string_equal(again.registry, r.registry);
		assert_string_equal(again.repository, r.repository);
		char *s2 = image_ref_string(&again);
		assert_string_equal(s, s2);
		free(s);
		free(s2);
		image_ref_release(&again);
		image_ref_release(&r);
		assert_null(r.registry);
	}
}

struct bad {
	const char *in, *why;
};

static const struct bad bads[] = {
	{ "", "empty" },
	{ "Debian", "repository" },
	{ "r.io/Team/x", "repository" },
	{ "r.io/a//b", "repository" },
	{ "r.io/a/", "repository" },
	{ "r.io/-a", "repository" },
	{ "r.io/a-", "repository" },
	{ "r.io/a..b", "repository" },
	{ "r.io/a___b", "repository" },
	{ "r.io/:tag", "repository" },
	{ "r.io/a:", "tag" },
	{ "r.io/a:-x", "tag" },
	{ "r.io/a:Bad Tag!", "space" },
	{ "r.io/a:bad!", "tag" },
	{ "r.io/a:" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "tag" },
	{ "r.io/a@sha256:abc", "digest" },
	{ "r.io/a@sha256:" D64 "0", "digest" },
	{ "r.io/a@sha512:" D64, "digest" },
	{ "r.io/a@sha256:" "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	  "digest" },
	{ "r.io/a@", "digest" },
	{ "r.io/a@sha256:" D64 "@sha256:" D64, "digest" },
	{ "bad_host.io/a", "registry" },
	{ "-r.io/a", "registry" },
	{ "r.io:0/a", "registry" },
	{ "r.io:65536/a", "registry" },
	{ "r.io:+80/a", "registry" },
	{ "r.io:/a", "registry" },
	{ "[]:5000/a", "registry" },
	{ "[::1]x/a", "registry" },
	{ "[zz]/a", "registry" },
	{ "r..io/a", "registry" },
	{ "r.io/a\tb", "control" },
	{ "r.io/a\nb", "control" },
	{ "r.io/caf\xc3\xa9", "non-ASCII" },
};

static void rejects_with_a_reason(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(bads); i++) {
		struct image_ref r = { (char *)"untouched", NULL, NULL, NULL };
		error_clear();
		if (image_ref_parse(&r, bads[i].in) == 0)
			fail_msg("'%s' was accepted", bads[i].in);
		assert_int_equal(error_kind(), PS_EXIT_USAGE);
		if (!strstr(error_message(), bads[i].why))
			fail_msg("'%s': '%s' does not say '%s'", bads[i].in, error_message(),
				 bads[i].why);
		assert_non_null(error_hint_text());
		assert_string_equal(r.registry, "untouched");
		/* A control character is never echoed back to the terminal. */
		assert_null(strchr(error_message(), '\n'));
		assert_null(strchr(error_message(), '\t'));
	}
	/* Far too long: refused without echoing it. */
	char *huge = xmalloc(5000);
	memset(huge, 'a', 4999);
	huge[4999] = '\0';
	struct image_ref r;
	assert_int_equal(image_ref_parse(&r, huge), -1);
	assert_true(strlen(error_message()) < 200);
	free(huge);
}

static void validators(void **state)
{
	assert_true(ref_tag_valid("latest"));
	assert_true(ref_tag_valid("_"));
	assert_true(ref_tag_valid("cell-1a2b3c4d"));
	assert_false(ref_tag_valid(""));
	assert_false(ref_tag_valid(".x"));
	assert_false(ref_tag_valid("a/b"));
	assert_false(ref_tag_valid("Bad Tag!"));

	assert_true(ref_repository_valid("a"));
	assert_true(ref_repository_valid("team/cells"));
	assert_false(ref_repository_valid(""));
	assert_false(ref_repository_valid("/a"));
	char long_repo[300];
	memset(long_repo, 'a', sizeof(long_repo) - 1);
	long_repo[sizeof(long_repo) - 1] = '\0';
	assert_false(ref_repository_valid(long_repo));

	assert_true(ref_registry_valid("127.0.0.1:5000"));
	assert_true(ref_registry_valid("localhost"));
	assert_true(ref_registry_valid("[fe80::1]:443"));
	assert_true(ref_registry_valid("docker.io"));
	assert_false(ref_registry_valid(""));
	assert_false(ref_registry_valid("host:port"));
	assert_false(ref_registry_valid("host:5000:1"));
	assert_false(ref_registry_valid("a.b."));
	assert_false(ref_registry_valid("host name"));

	assert_string_equal(ref_api_host("docker.io"), "registry-1.docker.io");
	assert_string_equal(ref_api_host("ghcr.io"), "ghcr.io");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_and_normalises),
		cmocka_unit_test(rejects_with_a_reason),
		cmocka_unit_test(validators),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
