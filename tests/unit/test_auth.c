/*
 * Unit tests for auth.c: WWW-Authenticate challenges, token answers, the
 * config's own credentials, docker's config.json (auths, credsStore,
 * credHelpers) and the docker-credential-* helper protocol, run through a
 * real helper program the test writes and puts first on PATH.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "error.h"
#include "testutil.h"
#include "util.h"

static char *dir, *old_path;

static int setup(void **state)
{
	dir = test_tmpdir("auth");
	test_sh(dir, "mkdir -p bin docker .docker");
	old_path = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	char *path = xstrfmt("%s/bin:%s", dir, old_path);
	setenv("PATH", path, 1);
	free(path);
	unsetenv("DOCKER_CONFIG");
	/*
	 * A credential helper speaking docker's protocol: `get`, the server on
	 * stdin, JSON on stdout; exit 1 with a message when it has nothing.
	 */
	free(test_write_file(dir, "bin/docker-credential-pystribtest",
			     "#!/bin/sh\n"
			     "[ \"$1\" = get ] || exit 2\n"
			     "read server\n"
			     "echo \"$server\" >> \"$(dirname \"$0\")/asked\"\n"
			     "case $server in\n"
			     "  reg.example.com) echo '{\"ServerURL\":\"reg.example.com\","
			     "\"Username\":\"helperuser\",\"Secret\":\"helper-s3cret\"}' ;;\n"
			     "  tok.example.com) echo '{\"Username\":\"<token>\",\"Secret\":\"refresh-tok\"}' ;;\n"
			     "  https://index.docker.io/v1/) echo '{\"Username\":\"hub\",\"Secret\":\"hubpw\"}' ;;\n"
			     "  garbage.example.com) echo 'this is not json' ;;\n"
			     "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
			     "esac\n", 0755));
	return 0;
}

static int teardown(void **state)
{
	setenv("PATH", old_path, 1);
	free(old_path);
	test_tmpdir_remove(dir);
	return 0;
}

/* ---- challenges ----------------------------------------------------- */

static void parses_bearer_and_basic_challenges(void **state)
{
	struct auth_challenge c;

	assert_int_equal(auth_challenge_parse(&c, "Bearer realm=\"https://auth.example.com/token\","
					      "service=\"registry.example.com\","
					      "scope=\"repository:team/cells:pull,push\""), 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://auth.example.com/token");
	assert_string_equal(c.service, "registry.example.com");
	assert_string_equal(c.scope, "repository:team/cells:pull,push");
	assert_null(c.error);
	auth_challenge_release(&c);
	assert_null(c.scheme);

	assert_int_equal(auth_challenge_parse(&c, "Basic realm=\"pystrib-bed\""), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "pystrib-bed");
	assert_null(c.service);
	auth_challenge_release(&c);

	/* Case-insensitive names, spaces, token values, escapes, unknown parameters. */
	assert_int_equal(auth_challenge_parse(&c, "  BEARER  Realm = https://a/t , foo=\"x,y\", "
					      "SERVICE=svc,error=\"insufficient_scope\", "
					      "scope=\"a \\\"quoted\\\" b\""), 0);
	assert_string_equal(c.scheme, "bearer");
	assert_string_equal(c.realm, "https://a/t");
	assert_string_equal(c.service, "svc");
	assert_string_equal(c.error, "insufficient_scope");
	assert_string_equal(c.scope, "a \"quoted\" b");
	auth_challenge_release(&c);

	/* Only the first of several challenges; the first value of a repeated name. */
	assert_int_equal(auth_challenge_parse(&c, "Basic realm=\"one\", realm=\"two\", "
					      "Bearer realm=\"https://x\""), 0);
	assert_string_equal(c.scheme, "basic");
	assert_string_equal(c.realm, "one");
	auth_challenge_release(&c);
	assert_int_equal(auth_challenge_parse(&c, "Negotiate, Basic realm=\"x\""), 0);
	assert_string_equal(c.scheme, "negotiate");
	assert_null(c.realm);
	auth_challenge_release(&c);
	assert_int_equal(auth_challenge_parse(&c, "Bearer"), 0);
	assert_null(c.realm);
	auth_challenge_release(&c);

	/* Unterminated quotes end the parameters, they do not run past the end. */
	assert_int_equal(auth_challenge_parse(&c, "Bearer realm=\"https://x"), 0);
	assert_null(c.realm);
	auth_challenge_release(&c);

	/* Not a challenge at all. */
	assert_int_equal(auth_challenge_parse(&c, ""), -1);
	assert_int_equal(auth_challenge_parse(&c, "   "), -1);
	assert_int_equal(auth_challenge_parse(&c, "=realm"), -1);
	assert_int_equal(auth_challenge_parse(&c, "\"Bearer\""), -1);
	char *huge = xmalloc(10000);
	memset(huge, 'a', 9999);
	huge[9999] = '\0';
	assert_int_equal(auth_challenge_parse(&c, huge), -1);
	free(huge);
}

static void parses_token_answers(void **state)
{
	char *t = NULL;
	long life = 0;
	const char *a = "{\"token\":\"abc.def.ghi\",\"expires_in\":300}";
	assert_int_equal(auth_token_parse(a, strlen(a), &t, &life), 0);
	assert_string_equal(t, "abc.def.ghi");
	assert_int_equal(life, 300);
	secret_free(t);
	const char *b = "{\"token\":\"\",\"access_token\":\"oauth-tok\"}";
	assert_int_equal(auth_token_parse(b, strlen(b), &t, &life), 0);
	assert_string_equal(t, "oauth-tok");
	assert_int_equal(life, 60);	/* the specification's default */
	secret_free(t);
	static const char *const odd_life[] = {
		"{\"token\":\"x\",\"expires_in\":-5}", "{\"token\":\"x\",\"expires_in\":\"300\"}",
		"{\"token\":\"x\",\"expires_in\":1e300}", "{\"token\":\"x\",\"expires_in\":0.5}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(odd_life); i++) {
		assert_int_equal(auth_token_parse(odd_life[i], strlen(odd_life[i]), &t, &life), 0);
		assert_int_equal(life, 60);
		secret_free(t);
	}
	t = NULL;
	static const char *const bad[] = {
		"", "{}", "[]", "null", "{\"token\":5}", "{\"token\":\"\"}", "not json",
		"{\"token\":\"a\\r\\nX-Injected: 1\"}", "{\"token\":\"with space\"}",
		"{\"access_token\":\"tab\\there\"}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		if (auth_token_parse(bad[i], strlen(bad[i]), &t, &life) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_null(t);
	}
	secret_free(NULL);
}

/* ---- docker config.json, in memory ---------------------------------- */

static int lookup(const char *json, const char *registry, struct credentials *c, char **helper)
{
	memset(c, 0, sizeof(*c));
	*helper = NULL;
	error_clear();
	return auth_docker_config_lookup(json, strlen(json), registry, c, helper);
}

static void docker_config_lookup(void **state)
{
	struct credentials c;
	char *h;

	/* "auth": base64 of user:password ("alice:pa:ss" has a ':' in the password). */
	const char *j1 = "{\"auths\":{\"https://reg.example.com/v1/\":{\"auth\":\"YWxpY2U6cGE6c3M=\"},"
			 "\"other.io\":{\"auth\":\"Ym9iOnB3\"}}}";
	assert_int_equal(lookup(j1, "reg.example.com", &c, &h), 0);
	assert_string_equal(c.username, "alice");
	assert_string_equal(c.password, "pa:ss");
	assert_non_null(c.origin);
	credentials_release(&c);
	assert_null(c.username);
	assert_int_equal(lookup(j1, "other.io", &c, &h), 0);
	assert_string_equal(c.username, "bob");
	assert_string_equal(c.password, "pw");
	credentials_release(&c);
	/* No prefix matching: "reg.example.co" is another host. */
	assert_int_equal(lookup(j1, "reg.example.co", &c, &h), 1);
	assert_int_equal(lookup(j1, "127.0.0.1:5000", &c, &h), 1);

	/* Separate username/password, identity tokens, and ports in keys. */
	const char *j2 = "{\"auths\":{\"127.0.0.1:5000\":{\"username\":\"u\",\"password\":\"p\"},"
			 "\"tok.io\":{\"auth\":\"\",\"identitytoken\":\"refresh\"},"
			 "\"empty.io\":{}}}";
	assert_int_equal(lookup(j2, "127.0.0.1:5000", &c, &h), 0);
	assert_string_equal(c.username, "u");
	assert_string_equal(c.password, "p");
	credentials_release(&c);
	assert_int_equal(lookup(j2, "127.0.0.1", &c, &h), 1);
	assert_int_equal(lookup(j2, "tok.io", &c, &h), 0);
	assert_null(c.password);
	assert_string_equal(c.identity_token, "refresh");
	credentials_release(&c);
	assert_int_equal(lookup(j2, "empty.io", &c, &h), 1);

	/* Docker Hub's many names. */
	const char *j3 = "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnB3\"}}}";
	assert_int_equal(lookup(j3, "docker.io", &c, &h), 0);
	assert_string_equal(c.username, "hub");
	credentials_release(&c);
	assert_int_equal(lookup(j3, "index.docker.io.evil.com", &c, &h), 1);

	/* credHelpers for the host, then credsStore, then auths. */
	const char *j4 = "{\"credsStore\":\"store\",\"credHelpers\":{\"reg.example.com\":\"special\"},"
			 "\"auths\":{\"reg.example.com\":{\"auth\":\"YTpi\"}}}";
	assert_int_equal(lookup(j4, "reg.example.com", &c, &h), 2);
	assert_string_equal(h, "special");
	free(h);
	assert_int_equal(lookup(j4, "other.io", &c, &h), 2);
	assert_string_equal(h, "store");
	free(h);
	const char *j5 = "{\"credsStore\":\"\",\"credHelpers\":{\"x.io\":5},\"auths\":{\"x.io\":{\"auth\":\"YTpi\"}}}";
	assert_int_equal(lookup(j5, "x.io", &c, &h), 0);
	assert_string_equal(c.username, "a");
	credentials_release(&c);

	/* Malformed: an error that names the problem but never the secret. */
	assert_int_equal(lookup("{\"auths\":", "x.io", &c, &h), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "not a JSON object"));
	assert_int_equal(lookup("[1,2]", "x.io", &c, &h), -1);
	static const char *const bad_auth[] = { "c2VjcmV0LW5vLWNvbG9u", "!!!!", "abc",
						"AGE6Yg==" /* "\0a:b" */ };
	for (size_t i = 0; i < ARRAY_SIZE(bad_auth); i++) {
		char *j = xstrfmt("{\"auths\":{\"x.io\":{\"auth\":\"%s\"}}}", bad_auth[i]);
		assert_int_equal(lookup(j, "x.io", &c, &h), -1);
		assert_int_equal(error_kind(), PS_EXIT_USAGE);
		assert_null(strstr(error_message(), bad_auth[i]));
		assert_null(strstr(error_message(), "secret-no-colon"));
		assert_null(c.username);
		free(j);
	}
	/* Wrong types are ignored, not trusted. */
	assert_int_equal(lookup("{\"auths\":[],\"credHelpers\":\"x\",\"credsStore\":1}", "x.io", &c, &h), 1);
	assert_int_equal(lookup("{\"auths\":{\"x.io\":\"str\"}}", "x.io", &c, &h), 1);
}

/* ---- credential helpers --------------------------------------------- */

static void credential_helper_protocol(void **state)
{
	struct credentials c = { 0 };

	assert_int_equal(auth_credential_helper("pystribtest", "reg.example.com", &c), 0);
	assert_string_equal(c.username, "helperuser");
	assert_string_equal(c.password, "helper-s3cret");
	assert_non_null(strstr(c.origin, "helper"));
	credentials_release(&c);

	/* Username "<token>": an identity token, not a password. */
	assert_int_equal(auth_credential_helper("pystribtest", "tok.example.com", &c), 0);
	assert_null(c.username);
	assert_null(c.password);
	assert_string_equal(c.identity_token, "refresh-tok");
	credentials_release(&c);

	/* Nothing stored: anonymous, not an error. */
	assert_int_equal(auth_credential_helper("pystribtest", "nothing.example.com", &c), 1);
	assert_null(c.username);

	error_clear();
	assert_int_equal(auth_credential_helper("pystribtest", "garbage.example.com", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "docker-credential-pystribtest"));

	assert_int_equal(auth_credential_helper("pystrib-not-installed", "reg.example.com", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "not installed"));

	/* A helper name from the config file cannot smuggle a path or options. */
	static const char *const hostile[] = { "../../bin/sh", "x y", "a/b", "$(id)", "" };
	for (size_t i = 0; i < ARRAY_SIZE(hostile); i++) {
		if (!*hostile[i])
			continue;
		assert_int_equal(auth_credential_helper(hostile[i], "reg.example.com", &c), -1);
		assert_int_equal(error_kind(), PS_EXIT_USAGE);
	}
}

/* ---- the whole lookup ----------------------------------------------- */

static void config_credentials_first(void **state)
{
	struct registry_config rc = { 0 };
	struct credentials c;

	rc.username = "cfguser";
	rc.password_env = "PYSTRIB_TEST_REGISTRY_PW";
	setenv("PYSTRIB_TEST_REGISTRY_PW", "env-s3cret", 1);
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), 0);
	assert_string_equal(c.username, "cfguser");
	assert_string_equal(c.password, "env-s3cret");
	assert_string_equal(c.origin, "the config");
	credentials_release(&c);

	unsetenv("PYSTRIB_TEST_REGISTRY_PW");
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "PYSTRIB_TEST_REGISTRY_PW"));

	/* password_file: trailing newline trimmed; "~/" expanded. */
	free(test_write_file(dir, "pw", "file-s3cret\n", 0600));
	rc.password_env = NULL;
	rc.password_file = "~/pw";
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), 0);
	assert_string_equal(c.password, "file-s3cret");
	credentials_release(&c);
	rc.password_file = "~/no-such-file";
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "no-such-file"));

	rc.password_file = NULL;
	rc.password = "inline";
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), 0);
	assert_string_equal(c.password, "inline");
	credentials_release(&c);

	rc.password = NULL;
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "no password"));
}

static void docker_config_on_disk(void **state)
{
	struct registry_config rc = { 0 };	/* no username: docker's config */
	struct credentials c;
	char *dockerdir = xstrfmt("%s/docker", dir);

	/* No docker config anywhere: anonymous. */
	assert_int_equal(auth_find_credentials(&rc, "reg.example.com", &c), 1);
	assert_int_equal(auth_find_credentials(NULL, "reg.example.com", &c), 1);

	/* ~/.docker/config.json with auths. */
	free(test_write_file(dir, ".docker/config.json",
			     "{\"auths\":{\"home.io\":{\"auth\":\"aG9tZTpob21lcHc=\"}}}", 0600));
	assert_int_equal(auth_find_credentials(NULL, "home.io", &c), 0);
	assert_string_equal(c.username, "home");
	assert_string_equal(c.password, "homepw");
	credentials_release(&c);

	/* $DOCKER_CONFIG wins, with credHelpers and credsStore through the helper. */
	setenv("DOCKER_CONFIG", dockerdir, 1);
	assert_int_equal(auth_find_credentials(NULL, "home.io", &c), 1);
	free(test_write_file(dockerdir, "config.json",
			     "{\"credHelpers\":{\"reg.example.com\":\"pystribtest\"}}", 0600));
	assert_int_equal(auth_find_credentials(NULL, "reg.example.com", &c), 0);
	assert_string_equal(c.username, "helperuser");
	assert_string_equal(c.password, "helper-s3cret");
	credentials_release(&c);
	assert_int_equal(auth_find_credentials(NULL, "other.example.com", &c), 1);

	free(test_write_file(dockerdir, "config.json", "{\"credsStore\":\"pystribtest\"}", 0600));
	assert_int_equal(auth_find_credentials(NULL, "nothing.example.com", &c), 1);
	assert_int_equal(auth_find_credentials(NULL, "docker.io", &c), 0);
	assert_string_equal(c.username, "hub");	/* asked for https://index.docker.io/v1/ */
	credentials_release(&c);

	/* The helper was asked exactly these servers, on stdin. */
	char *asked = xstrfmt("%s/bin/asked", dir);
	struct buf b = BUF_INIT;
	assert_int_equal(buf_read_file(&b, asked), 0);
	assert_non_null(strstr(b.ptr, "reg.example.com\n"));
	assert_non_null(strstr(b.ptr, "https://index.docker.io/v1/\n"));
	buf_release(&b);
	free(asked);

	free(test_write_file(dockerdir, "config.json", "{\"credsStore\":\"pystrib-missing\"}", 0600));
	assert_int_equal(auth_find_credentials(NULL, "x.io", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);

	free(test_write_file(dockerdir, "config.json", "{oops", 0600));
	assert_int_equal(auth_find_credentials(NULL, "x.io", &c), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_message(), "config.json"));

	unsetenv("DOCKER_CONFIG");
	free(dockerdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parses_bearer_and_basic_challenges),
		cmocka_unit_test(parses_token_answers),
		cmocka_unit_test(docker_config_lookup),
		cmocka_unit_test(credential_helper_protocol),
		cmocka_unit_test(config_credentials_first),
		cmocka_unit_test(docker_config_on_disk),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
