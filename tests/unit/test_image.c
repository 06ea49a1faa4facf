/*
 * Unit tests for image.c: which kind a manifest body is, platform choice
 * from an index (and the error listing what it has), manifest parsing of
 * both families with its checks on untrusted input, and the new config
 * and manifest: what is appended, what is replaced, what is kept, and
 * that the same inputs give the same bytes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "context.h"
#include "error.h"
#include "image.h"
#include "push.h"
#include "ref.h"

#define H(c) "sha256:" c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
	c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c
#define DA H("a")
#define DB H("b")
#define DC H("c")
#define DD H("d")
#define DE H("e")
#define DF H("f")

static const char index_json[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_INDEX "\",\"manifests\":["
	"{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DA "\",\"size\":10,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
	"{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DB "\",\"size\":11,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
	"{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DC "\",\"size\":12,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v6\"}},"
	"{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DD "\",\"size\":13,"
	"\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\",\"variant\":\"v7\"}},"
	"{\"mediaType\":\"" MEDIA_OCI_MANIFEST "\",\"digest\":\"" DE "\",\"size\":14,"
	"\"platform\":{\"os\":\"unknown\",\"architecture\":\"unknown\"}}]}";

static void pick(const char *platform, const char *want)
{
	char dg[DIGEST_LEN];
	char *mt = NULL;
	int r = image_index_pick(index_json, strlen(index_json), platform, "base", dg, &mt);
	if (!want) {
		assert_int_equal(r, -1);
		return;
	}
	if (r < 0)
		fail_msg("%s: %s", platform, error_message());
	assert_string_equal(dg, want);
	assert_string_equal(mt, MEDIA_OCI_MANIFEST);
	free(mt);
}

static void test_index_pick(void **state)
{
	(void)state;
	pick("linux/amd64", DA);
	pick("linux/x86_64", DA);
	pick("linux/arm64", DB);
	pick("linux/arm64/v8", DB);
	pick("linux/aarch64", DB);
	pick("linux/arm/v6", DC);
	pick("linux/arm/v7", DD);
	pick("linux/arm", DD);		/* the usual variant wins */
	pick("linux/arm/v5", NULL);
	pick("windows/amd64", NULL);
}

static void test_index_no_match_lists_platforms(void **state)
{
	char dg[DIGEST_LEN];
	char *mt = NULL;
	(void)state;
	assert_int_equal(image_index_pick(index_json, strlen(index_json), "linux/s390x",
					  "reg/base:1", dg, &mt), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_string_equal(error_message(),
			    "base image 'reg/base:1' has no image for platform 'linux/s390x'; it has "
			    "linux/amd64, linux/arm64/v8, linux/arm/v6, linux/arm/v7");
	assert_non_null(strstr(error_hint_text(), "[image] platform"));
	assert_null(mt);

	/* A bad platform setting is the user's error. */
	assert_int_equal(image_index_pick(index_json, strlen(index_json), "linux", "b", dg, &mt), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
}

static void test_index_bad_input(void **state)
{
	static const char *const bodies[] = {
		"", "[]", "{", "{\"manifests\":{}}", "{\"manifests\":[1,\"x\",null]}",
		"{\"manifests\":[{\"digest\":\"sha256:00\",\"size\":1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}",
		"{\"manifests\":[{\"digest\":\"" DA "\",\"size\":-1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}",
		"{\"manifests\":[{\"mediaType\":\"text/html\",\"digest\":\"" DA "\",\"size\":1,"
		"\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}",
		"{\"manifests\":[],\"manifests\":[]}",
	};
	char dg[DIGEST_LEN];
	char *mt = NULL;
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
		assert_int_equal(image_index_pick(bodies[i], strlen(bodies[i]), "linux/amd64", "b", dg,
						  &mt), -1);
		assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
		assert_null(mt);
	}
}

static void test_manifest_kind(void **state)
{
	enum manifest_kind k;
	const char *oci_index = "{\"manifests\":[]}", *oci_man = "{\"layers\":[]}";
	const char *s1 = "{\"schemaVersion\":1,\"fsLayers\":[]}";
	(void)state;
	assert_int_equal(image_manifest_kind(MEDIA_DOCKER_MANIFEST, "", 0, "b", &k), 0);
	assert_int_equal(k, MANIFEST_IMAGE);
	assert_int_equal(image_manifest_kind(MEDIA_DOCKER_LIST "; charset=utf-8", "", 0, "b", &k), 0);
	assert_int_equal(k, MANIFEST_INDEX);
	assert_int_equal(image_manifest_kind(NULL, oci_index, strlen(oci_index), "b", &k), 0);
	assert_int_equal(k, MANIFEST_INDEX);
	assert_int_equal(image_manifest_kind("application/json", oci_man, strlen(oci_man), "b", &k),
			 0);
	assert_int_equal(k, MANIFEST_IMAGE);
	assert_int_equal(image_manifest_kind(NULL, s1, strlen(s1), "b", &k), -1);
	assert_non_null(strstr(error_message(), "schema 1"));
	assert_int_equal(image_manifest_kind("application/vnd.docker.distribution.manifest.v1+prettyjws",
					     "", 0, "b", &k), -1);
	assert_int_equal(image_manifest_kind("text/html", "", 0, "b", &k), -1);
	assert_non_null(strstr(error_message(), "unknown manifest type 'text/html'"));
}

static const char docker_manifest[] =
	"{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_DOCKER_MANIFEST "\","
	"\"config\":{\"mediaType\":\"" MEDIA_DOCKER_CONFIG "\",\"digest\":\"" DA "\",\"size\":100},"
	"\"layers\":[{\"mediaType\":\"" MEDIA_DOCKER_LAYER "\",\"digest\":\"" DB "\",\"size\":2000},"
	"{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\","
	"\"digest\":\"" DC "\",\"size\":3000,\"urls\":[\"https://example.com/x\"]}]}";

static const char oci_manifest[] =
	"{\"schemaVersion\":2,"
	"\"config\":{\"mediaType\":\"" MEDIA_OCI_CONFIG "\",\"digest\":\"" DA "\",\"size\":100},"
	"\"layers\":[{\"mediaType\":\"" MEDIA_OCI_LAYER "\",\"digest\":\"" DB "\",\"size\":2000,"
	"\"annotations\":{\"z\":\"1\",\"a\":\"2\"}}]}";

static void test_manifest_parse(void **state)
{
	struct image_manifest m;
	(void)state;
	assert_int_equal(image_manifest_parse(&m, docker_manifest, strlen(docker_manifest), "b"), 0);
	assert_int_equal(m.oci, 0);
	assert_string_equal(m.config.digest, DA);
	assert_int_equal(m.config.size, 100);
	assert_int_equal(m.nlayers, 2);
	assert_string_equal(m.layers[0].digest, DB);
	assert_int_equal(m.layers[0].size, 2000);
	assert_int_equal(m.layers[0].foreign, 0);
	assert_int_equal(m.layers[1].foreign, 1);
	image_manifest_release(&m);

	assert_int_equal(image_manifest_parse(&m, oci_manifest, strlen(oci_manifest), "b"), 0);
	assert_int_equal(m.oci, 1);
	assert_int_equal(m.nlayers, 1);
	image_manifest_release(&m);
}

static void test_manifest_bad_input(void **state)
{
	static const char *const bodies[] = {
		"{}", "{\"schemaVersion\":1}", "{\"schemaVersion\":\"2\"}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1}}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":[{}]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:ZZ\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1.5},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":"
		"[{\"digest\":\"" DB "\",\"size\":1}]}",
		"{\"schemaVersion\":2,\"mediaType\":\"" MEDIA_OCI_INDEX "\",\"config\":{\"digest\":\""
		DA "\",\"size\":1},\"layers\":[]}",
		"{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":[]}x",
	};
	struct image_manifest m;
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
		if (image_manifest_parse(&m, bodies[i], strlen(bodies[i]), "b") == 0)
			fail_msg("accepted: %s", bodies[i]);
		assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
		image_manifest_release(&m);
	}

	/* Too many layers. */
	struct buf b = BUF_INIT;
	buf_addstr(&b, "{\"schemaVersion\":2,\"config\":{\"digest\":\"" DA "\",\"size\":1},\"layers\":[");
	for (int i = 0; i <= IMAGE_MAX_LAYERS; i++)
		buf_addf(&b, "%s{\"mediaType\":\"x\",\"digest\":\"" DB "\",\"size\":1}", i ? "," : "");
	buf_addstr(&b, "]}");
	assert_int_equal(image_manifest_parse(&m, b.ptr, b.len, "b"), -1);
	assert_non_null(strstr(error_message(), "too many layers"));
	image_manifest_release(&m);
	buf_release(&b);
}

static const char base_config[] =
	"{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2020-01-01T00:00:00Z\","
	"\"container_config\":{\"Cmd\":[\"/bin/sh\"]},\"container\":\"abc\","
	"\"config\":{\"Env\":[\"PATH=/usr/bin:/bin\",\"PYSTRIB_CELL=/old\",\"LANG=C.UTF-8\"],"
	"\"Cmd\":[\"python3\"],\"Labels\":{\"keep\":\"me\"},\"User\":\"0\"},"
	"\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DB "\",\"" DC "\"]},"
	"\"history\":[{\"created_by\":\"one\"},{\"created_by\":\"two\"}],\"zz_unknown\":[1,2]}";

static struct layer project = { NULL, DD, DE, 500, (char *)"pystrib: project, 3 files" };
static struct layer cell = { NULL, DF, DA, 200, (char *)"pystrib: cell, bootstrap and 0 inputs" };
static char *env[] = { (char *)"PYSTRIB_CELL=/pystrib/cell/user_code.py",
		       (char *)"PYSTRIB_INPUTS=/pystrib/cell/inputs" };

static void fake_context(struct context *ctx, int with_git)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->workdir = (char *)"/pystrib/project/nb";
	ctx->env = env;
	ctx->nenv = 2;
	ctx->created = (char *)(with_git ? "2024-05-06T07:08:09Z" : "1970-01-01T00:00:00Z");
	if (with_git) {
		ctx->revision = (char *)"0123456789abcdef0123456789abcdef01234567-dirty";
		ctx->source = (char *)"https://git.example.com/team/proj.git";
	}
}

static json_t *build_config(const struct context *ctx, struct buf *out)
{
	const struct layer *layers[] = { &project, &cell };
	json_error_t err;
	if (image_config_build(out, base_config, strlen(base_config), 2, ctx, layers, 2,
			       "linux/amd64", "b") < 0)
		fail_msg("%s", error_message());
	json_t *j = json_loadb(out->ptr, out->len, 0, &err);
	assert_non_null(j);
	return j;
}

static void test_config_build(void **state)
{
	struct context ctx;
	struct buf out = BUF_INIT, again = BUF_INIT;
	json_t *j, *c, *v;
	(void)state;

	fake_context(&ctx, 1);
	j = build_config(&ctx, &out);
	c = json_object_get(j, "config");
	v = json_object_get(json_object_get(j, "rootfs"), "diff_ids");
	assert_int_equal(json_array_size(v), 4);
	assert_string_equal(json_string_value(json_array_get(v, 0)), DB);
	assert_string_equal(json_string_value(json_array_get(v, 2)), DE);
	assert_string_equal(json_string_value(json_array_get(v, 3)), DA);
	v = json_object_get(c, "Env");
	assert_int_equal(json_array_size(v), 4);
	assert_string_equal(json_string_value(json_array_get(v, 0)), "PATH=/usr/bin:/bin");
	assert_string_equal(json_string_value(json_array_get(v, 1)), "LANG=C.UTF-8");
	assert_string_equal(json_string_value(json_array_get(v, 2)),
			    "PYSTRIB_CELL=/pystrib/cell/user_code.py");
	v = json_object_get(c, "Cmd");
	assert_int_equal(json_array_size(v), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(json_string_value(json_array_get(v, i)), context_cmd[i]);
	assert_string_equal(json_string_value(json_object_get(c, "WorkingDir")), "/pystrib/project/nb");
	assert_string_equal(json_string_value(json_object_get(c, "User")), "0");
	v = json_object_get(c, "Labels");
	assert_string_equal(json_string_value(json_object_get(v, "keep")), "me");
	assert_string_equal(json_string_value(json_object_get(v, "org.opencontainers.image.revision")),
			    ctx.revision);
	assert_string_equal(json_string_value(json_object_get(v, "org.opencontainers.image.created")),
			    "2024-05-06T07:08:09Z");
	assert_string_equal(json_string_value(json_object_get(v, "org.opencontainers.image.source")),
			    ctx.source);
	assert_string_equal(json_string_value(json_object_get(j, "created")), "2024-05-06T07:08:09Z");
	assert_null(json_object_get(j, "container_config"));
	assert_null(json_object_get(j, "container"));
	assert_non_null(json_object_get(j, "zz_unknown"));
	v = json_object_get(j, "history");
	assert_int_equal(json_array_size(v), 5);
	assert_string_equal(json_string_value(json_object_get(json_array_get(v, 3), "created_by")),
			    cell.created_by);
	assert_true(json_is_true(json_object_get(json_array_get(v, 4), "empty_layer")));
	json_decref(j);

	/* Compact, sorted, and the same bytes again. */
	assert_null(strchr(out.ptr, '\n'));
	assert_true(strstr(out.ptr, "\"architecture\"") < strstr(out.ptr, "\"config\""));
	j = build_config(&ctx, &again);
	json_decref(j);
	assert_string_equal(out.ptr, again.ptr);

	/* Without git: no revision labels, the epoch as created. */
	fake_context(&ctx, 0);
	j = build_config(&ctx, &out);
	v = json_object_get(json_object_get(j, "config"), "Labels");
	assert_null(json_object_get(v, "org.opencontainers.image.revision"));
	assert_string_equal(json_string_value(json_object_get(j, "created")), "1970-01-01T00:00:00Z");
	json_decref(j);
	buf_release(&out);
	buf_release(&again);
}

static void test_config_bad_input(void **state)
{
	static const char *const bodies[] = {
		"[]", "{}", "{\"rootfs\":[]}", "{\"rootfs\":{\"diff_ids\":{}}}",
		"{\"rootfs\":{\"diff_ids\":[\"" DB "\"]}}",	/* one diff_id for two layers */
		"{\"rootfs\":{\"diff_ids\":[\"" DB "\",\"nope\"]}}",
		"{\"rootfs\":{\"diff_ids\":[\"" DB "\",\"" DC "\"]},\"history\":{}}",
	};
	const struct layer *layers[] = { &cell };
	struct context ctx;
	struct buf out = BUF_INIT;
	(void)state;
	fake_context(&ctx, 1);
	for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
		if (image_config_build(&out, bodies[i], strlen(bodies[i]), 2, &ctx, layers, 1, NULL,
				       "b") == 0)
			fail_msg("accepted: %s", bodies[i]);
		assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	}
	/* A config with no "config" and no history still works. */
	const char *bare = "{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
	assert_int_equal(image_config_build(&out, bare, strlen(bare), 0, &ctx, layers, 1, NULL, "b"), 0);
	assert_non_null(strstr(out.ptr, "\"WorkingDir\":\"/pystrib/project/nb\""));
	buf_release(&out);
}

static void test_manifest_build(void **state)
{
	const struct layer *layers[] = { &project, &cell };
	struct image_manifest m;
	struct buf out = BUF_INIT;
	const char *mt;
	json_error_t err;
	json_t *j, *l;
	(void)state;

	assert_int_equal(image_manifest_parse(&m, docker_manifest, strlen(docker_manifest), "b"), 0);
	assert_int_equal(image_manifest_build(&out, &m, DE, 1234, layers, 2, &mt), 0);
	assert_string_equal(mt, MEDIA_DOCKER_MANIFEST);
	j = json_loadb(out.ptr, out.len, 0, &err);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "mediaType")), MEDIA_DOCKER_MANIFEST);
	assert_int_equal(json_integer_value(json_object_get(j, "schemaVersion")), 2);
	l = json_object_get(j, "config");
	assert_string_equal(json_string_value(json_object_get(l, "mediaType")), MEDIA_DOCKER_CONFIG);
	assert_string_equal(json_string_value(json_object_get(l, "digest")), DE);
	assert_int_equal(json_integer_value(json_object_get(l, "size")), 1234);
	l = json_object_get(j, "layers");
	assert_int_equal(json_array_size(l), 4);
	/* The base's descriptors as they were, foreign urls included. */
	assert_non_null(json_object_get(json_array_get(l, 1), "urls"));
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 2), "digest")), DD);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 3), "mediaType")),
			    MEDIA_DOCKER_LAYER);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(l, 3), "size")), 200);
	json_decref(j);
	image_manifest_release(&m);

	assert_int_equal(image_manifest_parse(&m, oci_manifest, strlen(oci_manifest), "b"), 0);
	assert_int_equal(image_manifest_build(&out, &m, DE, 1234, layers + 1, 1, &mt), 0);
	assert_string_equal(mt, MEDIA_OCI_MANIFEST);
	assert_non_null(strstr(out.ptr, "\"annotations\":{\"a\":\"2\",\"z\":\"1\"}"));
	assert_non_null(strstr(out.ptr, "\"config\":{\"digest\":\"" DE "\",\"mediaType\":\""
					MEDIA_OCI_CONFIG "\",\"size\":1234}"));
	assert_non_null(strstr(out.ptr, "{\"digest\":\"" DF "\",\"mediaType\":\"" MEDIA_OCI_LAYER
					"\",\"size\":200}]"));
	image_manifest_release(&m);
	buf_release(&out);
}

static void tag_is(const char *name, const char *want)
{
	char *t = push_default_tag(name, DA);
	assert_string_equal(t, want);
	assert_true(ref_tag_valid(t));
	free(t);
}

static void test_default_tag(void **state)
{
	(void)state;
	tag_is("nb/train.py", "train-aaaaaaaaaaaa");
	tag_is("/a/b/My Cell (2).py", "my-cell--2--aaaaaaaaaaaa");
	tag_is("script", "script-aaaaaaaaaaaa");
	tag_is(".hidden.py", "cell-.hidden-aaaaaaaaaaaa");
	tag_is("-x.py", "cell--x-aaaaaaaaaaaa");
	tag_is(".py", "cell-aaaaaaaaaaaa");
	tag_is(NULL, "cell-aaaaaaaaaaaa");
	tag_is("Zellé.py", "zell---aaaaaaaaaaaa");
	/* Long names are cut so the tag stays within 128 characters. */
	char long_name[300];
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	char *t = push_default_tag(long_name, DA);
	assert_true(ref_tag_valid(t));
	assert_int_equal(strlen(t), 113);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_index_pick),
		cmocka_unit_test(test_index_no_match_lists_platforms),
		cmocka_unit_test(test_index_bad_input),
		cmocka_unit_test(test_manifest_kind),
		cmocka_unit_test(test_manifest_parse),
		cmocka_unit_test(test_manifest_bad_input),
		cmocka_unit_test(test_config_build),
		cmocka_unit_test(test_config_bad_input),
		cmocka_unit_test(test_manifest_build),
		cmocka_unit_test(test_default_tag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
