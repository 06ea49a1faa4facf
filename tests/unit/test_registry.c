/*
 * Tests for registry.c against the real distribution registry
 * (docker-registry serve), started here on free loopback ports: one plain
 * http, one with TLS (a CA made by openssl here) and htpasswd (bcrypt)
 * basic auth. Both are stopped in teardown. Skipped when docker-registry
 * is not installed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "digest.h"
#include "error.h"
#include "log.h"
#include "registry.h"
#include "testutil.h"
#include "util.h"

static char *dir;
static int plain_port, tls_port, token_port, bearer_port;
static pid_t plain_pid, tls_pid, token_pid, bearer_pid;
static char *bearer_host, *bearer_url;
static char *plain_host, *tls_host, *plain_url, *tls_url, *ca, *password_file, *password;

/* ---- fixture -------------------------------------------------------- */

static pid_t start_registry(const char *name, int port, const char *extra)
{
	char *cfg = xstrfmt("%s/%s.yml", dir, name), *text;
	text = xstrfmt("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
		       "    rootdirectory: %s/%s-data\n  delete:\n    enabled: true\n"
		       "http:\n  addr: 127.0.0.1:%d\n%s", dir, name, port, extra);
	char *base = xstrfmt("%s.yml", name);
	free(test_write_file(dir, base, text, 0644));
	free(base);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *log = xstrfmt("%s/%s.log", dir, name);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execl("/usr/bin/docker-registry", "docker-registry", "serve", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !test_port_open(port); i++)
		usleep(50000);
	assert_true(test_port_open(port));
	free(cfg);
	free(text);
	return pid;
}

static const char *source_dir(void)
{
	static char *d;
	const char *env = getenv("PYSTRIB_SOURCE_DIR");
	if (env && *env)
		return env;
	if (!d) {
		d = xstrdup(__FILE__);
		char *p = strstr(d, "/tests/unit/");
		if (p)
			*p = '\0';
	}
	return d;
}

/*
 * A registry with token auth (auth.token) and its token service
 * (tests/unit/registry_token_server.py, signing with an RSA key whose
 * certificate is the registry's rootcertbundle).
 */
static void start_token_registry(void)
{
	test_sh(dir, "mkdir -p token && cd token && "
		"openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=pystrib token' "
		"-keyout key.pem -out cert.pem && printf 'pystrib:%%s\n' \"$(cat ../password)\" > users && "
		"echo refresh-0123456789 > refresh");
	token_port = test_free_port();
	char *script = xstrfmt("%s/tests/unit/registry_token_server.py", source_dir());
	char *tdir = xstrfmt("%s/token", dir), *port = xstrfmt("%d", token_port);
	token_pid = fork();
	assert_true(token_pid >= 0);
	if (token_pid == 0) {
		execl("/usr/bin/python3", "python3", script, port, tdir, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !test_port_open(token_port); i++)
		usleep(50000);
	assert_true(test_port_open(token_port));
	bearer_port = test_free_port();
	char *extra = xstrfmt("auth:\n  token:\n    realm: http://127.0.0.1:%d/token\n"
			      "    service: pystrib-test\n    issuer: pystrib-test-issuer\n"
			      "    rootcertbundle: %s/cert.pem\n", token_port, tdir);
	bearer_pid = start_registry("bearer", bearer_port, extra);
	bearer_host = xstrfmt("127.0.0.1:%d", bearer_port);
	bearer_url = xstrfmt("http://%s", bearer_host);
	free(extra);
	free(script);
	free(tdir);
	free(port);
}

static int setup(void **state)
{
	(void)state;
	if (access("/usr/bin/docker-registry", X_OK) < 0)
		return 0;
	dir = test_tmpdir("registry");
	/* A CA and a server certificate for 127.0.0.1, and a random password. */
	test_sh(dir, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		"-days 2 -subj '/CN=pystrib test CA' -keyout ca.key -out ca.crt && "
		"openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		"-subj '/CN=localhost' -keyout server.key -out server.csr && "
		"printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
		"openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
		"-days 2 -extfile san.ext -out server.crt && "
		"(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > password) && "
		"htpasswd -B -i -c htpasswd pystrib < password");
	ca = xstrfmt("%s/ca.crt", dir);
	password_file = xstrfmt("%s/password", dir);
	struct buf b = BUF_INIT;
	assert_int_equal(buf_read_file(&b, password_file), 0);
	buf_rtrim(&b);
	password = buf_detach(&b, NULL);
	assert_true(strlen(password) >= 16);

	plain_port = test_free_port();
	plain_pid = start_registry("plain", plain_port, "");
	tls_port = test_free_port();
	char *extra = xstrfmt("  tls:\n    certificate: %s/server.crt\n    key: %s/server.key\n"
			      "auth:\n  htpasswd:\n    realm: pystrib-test\n    path: %s/htpasswd\n",
			      dir, dir, dir);
	tls_pid = start_registry("tls", tls_port, extra);
	free(extra);
	start_token_registry();
	plain_host = xstrfmt("127.0.0.1:%d", plain_port);
	tls_host = xstrfmt("127.0.0.1:%d", tls_port);
	plain_url = xstrfmt("http://%s", plain_host);
	tls_url = xstrfmt("https://%s", tls_host);
	unsetenv("DOCKER_CONFIG");
	unsetenv("PYSTRIB_REGISTRY_CHUNK");
	return 0;
}

static void stop(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
		*pid = 0;
	}
}

static pid_t proxy_pid;

static int teardown(void **state)
{
	(void)state;
	/* First the proxy a failed test left running: a registry stopping
	 * waits for the connections it still holds to close. */
	stop(&proxy_pid);
	stop(&plain_pid);
	stop(&tls_pid);
	stop(&bearer_pid);
	stop(&token_pid);
	free(bearer_host);
	free(bearer_url);
	test_tmpdir_remove(dir);
	free(plain_host);
	free(tls_host);
	free(plain_url);
	free(tls_url);
	free(ca);
	free(password_file);
	free(password);
	return 0;
}

static void need_registry(void)
{
	if (!plain_pid)
		skip();
}

/* A config that points at the plain registry, or the TLS one with credentials. */
static void plain_config(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->registry.url = plain_url;
}

static void tls_config(struct config *cfg, const char *pwfile)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->registry.url = tls_url;
	cfg->registry.username = "pystrib";
	cfg->registry.password_file = pwfile;
	cfg->registry.ca_file = ca;
}

static struct registry *open_ok(const struct config *cfg, const char *host)
{
	struct registry *r = NULL;
	if (registry_open(&r, cfg, host) < 0)
		fail_msg("registry_open: %s", error_message());
	return r;
}

static void ok(int rc)
{
	if (rc < 0)
		fail_msg("%s (hint: %s)", error_message(), error_hint_text() ? error_hint_text() : "");
}

/* Writes n pseudo-random bytes to dir/name; returns the path, fills digest. */
static char *random_file(const char *name, size_t n, unsigned seed, char digest[DIGEST_LEN])
{
	char *path = xstrfmt("%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		fputc((int)(seed >> 16) & 0xff, f);
	}
	assert_int_equal(fclose(f), 0);
	assert_int_equal(digest_file(path, digest), 0);
	return path;
}

/* ---- tests ---------------------------------------------------------- */

static void ping_plain_and_count_requests(void **state)
{
	struct config cfg;
	need_registry();
	plain_config(&cfg);
	struct registry *r = open_ok(&cfg, plain_host);
	assert_string_equal(registry_host(r), plain_host);
	assert_int_equal(registry_has_credentials(r, NULL), 0);
	ok(registry_ping(r));
	ok(registry_ping(r));
	assert_int_equal(registry_requests(r), 2);
	assert_int_equal(registry_authenticated(r), 0);
	registry_free(r);
}

static void blobs_from_memory_and_file(void **state)
{
	struct config cfg;
	struct buf got;
	char d[DIGEST_LEN], fd_[DIGEST_LEN];
	const char text[] = "{\"hello\":\"registry\"}";

	need_registry();
	plain_config(&cfg);
	struct registry *r = open_ok(&cfg, plain_host);
	digest_bytes(text, strlen(text), d);
	assert_int_equal(registry_blob_exists(r, "t/blobs", d), 0);
	ok(registry_upload_bytes(r, "t/blobs", text, strlen(text), d));
	assert_int_equal(registry_blob_exists(r, "t/blobs", d), 1);
	buf_init(&got, 0);
	ok(registry_get_blob(r, "t/blobs", d, &got));
	assert_int_equal(got.len, strlen(text));
	assert_memory_equal(got.ptr, text, got.len);
	/* A cap smaller than the blob: too large, and nothing filled. */
	struct buf small;
	buf_init(&small, 4);
	assert_int_equal(registry_get_blob(r, "t/blobs", d, &small), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_int_equal(small.len, 0);

	/* A file, monolithic (below the default chunk threshold), with progress. */
	char *path = random_file("mono.bin", 300000, 1, fd_);
	ok(registry_upload_file(r, "t/blobs", path, fd_, 300000, NULL, NULL));
	assert_int_equal(registry_blob_exists(r, "t/blobs", fd_), 1);
	char *back = xstrfmt("%s/mono.back", dir);
	ok(registry_get_blob_file(r, "t/blobs", fd_, 300000, back));
	char again[DIGEST_LEN];
	assert_int_equal(digest_file(back, again), 0);
	assert_string_equal(again, fd_);

	/* A digest the registry does not have: an error, and no file left behind. */
	char missing[DIGEST_LEN];
	digest_bytes("nothing", 7, missing);
	assert_int_equal(registry_get_blob_file(r, "t/blobs", missing, 7, back), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_int_equal(access(back, F_OK), -1);
	/* More bytes than the descriptor promised: stopped there, and no file either. */
	assert_int_equal(registry_get_blob_file(r, "t/blobs", fd_, 299999, back), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "more than the 299999 bytes"));
	assert_int_equal(access(back, F_OK), -1);
	/* A wrong size is caught before anything is sent: the local file's fault. */
	assert_int_equal(registry_upload_file(r, "t/blobs", path, fd_, 12, NULL, NULL), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	/* So is a file that cannot be created. */
	assert_int_equal(registry_get_blob_file(r, "t/blobs", fd_, 300000,
						"/nonexistent/pystrib-test/blob"), -1);
	assert_int_equal(error_kind(), PS_EXIT_IO);
	/* A digest that does not match the bytes: the registry refuses it. */
	assert_int_equal(registry_upload_bytes(r, "t/blobs", "abc", 3, missing), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "DIGEST_INVALID"));
	assert_int_equal(registry_blob_exists(r, "t/blobs", missing), 0);

	buf_release(&got);
	buf_release(&small);
	free(path);
	free(back);
	registry_free(r);
}

struct progress {
	uint64_t last, total;
	unsigned calls;
	int backwards;
};

static void on_progress(void *data, uint64_t sent, uint64_t total)
{
	struct progress *p = data;
	if (sent < p->last)
		p->backwards = 1;
	p->last = sent;
	p->total = total;
	p->calls++;
}

static void chunked_upload(void **state)
{
	struct config cfg;
	char d[DIGEST_LEN];
	struct progress p = { 0 };

	need_registry();
	plain_config(&cfg);
	setenv("PYSTRIB_REGISTRY_CHUNK", "10000", 1);
	struct registry *r = open_ok(&cfg, plain_host);
	unsetenv("PYSTRIB_REGISTRY_CHUNK");
	char *path = random_file("chunked.bin", 95000, 2, d);
	unsigned before = registry_requests(r);
	ok(registry_upload_file(r, "t/chunked", path, d, 95000, on_progress, &p));
	/* POST, 9 PATCHes of 10000 bytes, the last 5000 bytes with the PUT. */
	assert_int_equal(registry_requests(r) - before, 11);
	assert_int_equal(registry_blob_exists(r, "t/chunked", d), 1);
	assert_int_equal(p.last, 95000);
	assert_int_equal(p.total, 95000);
	assert_false(p.backwards);
	assert_true(p.calls >= 10);
	char *back = xstrfmt("%s/chunked.back", dir);
	ok(registry_get_blob_file(r, "t/chunked", d, 95000, back));
	char again[DIGEST_LEN];
	assert_int_equal(digest_file(back, again), 0);
	assert_string_equal(again, d);
	free(path);
	free(back);
	registry_free(r);
}

static void mount_across_repositories(void **state)
{
	struct config cfg;
	char d[DIGEST_LEN], absent[DIGEST_LEN];

	need_registry();
	plain_config(&cfg);
	struct registry *r = open_ok(&cfg, plain_host);
	digest_bytes("mount me", 8, d);
	ok(registry_upload_bytes(r, "t/from", "mount me", 8, d));
	assert_int_equal(registry_blob_exists(r, "t/to", d), 0);
	assert_int_equal(registry_mount_blob(r, "t/to", d, "t/from"), 1);
	assert_int_equal(registry_blob_exists(r, "t/to", d), 1);
	digest_bytes("not there", 9, absent);
	assert_int_equal(registry_mount_blob(r, "t/to2", absent, "t/from"), 0);
	assert_int_equal(registry_blob_exists(r, "t/to2", absent), 0);
	registry_free(r);
}

static const char schema2[] = "application/vnd.docker.distribution.manifest.v2+json";

/* Pushes a config and a layer to repo; returns a manifest referencing them. */
static char *push_parts(struct registry *r, const char *repo, const char *layer_text)
{
	const char config[] = "{\"architecture\":\"amd64\",\"os\":\"linux\","
			      "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";
	char cd[DIGEST_LEN], ld[DIGEST_LEN];
	digest_bytes(config, strlen(config), cd);
	digest_bytes(layer_text, strlen(layer_text), ld);
	ok(registry_upload_bytes(r, repo, config, strlen(config), cd));
	ok(registry_upload_bytes(r, repo, layer_text, strlen(layer_text), ld));
	return xstrfmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
		       "\"application/vnd.docker.container.image.v1+json\",\"size\":%zu,"
		       "\"digest\":\"%s\"},\"layers\":[{\"mediaType\":"
		       "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":%zu,"
		       "\"digest\":\"%s\"}]}", schema2, strlen(config), cd, strlen(layer_text), ld);
}

static void manifests_by_tag_and_digest(void **state)
{
	struct config cfg;
	struct buf body = BUF_INIT;
	char *mt = NULL, d[DIGEST_LEN], want[DIGEST_LEN];

	need_registry();
	plain_config(&cfg);
	struct registry *r = open_ok(&cfg, plain_host);
	char *m = push_parts(r, "t/img", "layer bytes");
	digest_bytes(m, strlen(m), want);
	ok(registry_put_manifest(r, "t/img", "v1", schema2, m, strlen(m)));
	ok(registry_get_manifest(r, "t/img", "v1", &body, &mt, d));
	assert_string_equal(body.ptr, m);
	assert_string_equal(mt, schema2);
	assert_string_equal(d, want);
	free(mt);
	mt = NULL;
	ok(registry_get_manifest(r, "t/img", want, &body, &mt, d));
	assert_string_equal(body.ptr, m);
	assert_string_equal(d, want);
	free(mt);
	mt = NULL;
	assert_int_equal(registry_manifest_exists(r, "t/img", want), 1);
	char other[DIGEST_LEN];
	digest_bytes("no such manifest", 16, other);
	assert_int_equal(registry_manifest_exists(r, "t/img", other), 0);
	assert_int_equal(registry_manifest_exists(r, "t/nosuchrepo", want), 0);

	/* Missing: the error names repo:tag. */
	assert_int_equal(registry_get_manifest(r, "t/img", "nosuch", &body, &mt, d), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "t/img:nosuch"));
	assert_null(mt);

	/* A manifest naming a blob that is not there: the registry's code. */
	char absent[DIGEST_LEN];
	digest_bytes("absent layer", 12, absent);
	char *bad = xstrfmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
			    "\"application/vnd.docker.container.image.v1+json\",\"size\":12,"
			    "\"digest\":\"%s\"},\"layers\":[]}", schema2, absent);
	assert_int_equal(registry_put_manifest(r, "t/img", "bad", schema2, bad, strlen(bad)), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "BLOB_UNKNOWN"));
	assert_int_equal(registry_get_manifest(r, "t/img", "bad", &body, &mt, d), -1);

	/* Invalid names never reach the registry. */
	unsigned n = registry_requests(r);
	assert_int_equal(registry_get_manifest(r, "T/Img", "v1", &body, &mt, d), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_int_equal(registry_put_manifest(r, "t/img", "Bad Tag!", schema2, m, strlen(m)), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_int_equal(registry_requests(r), n);

	free(bad);
	free(m);
	buf_release(&body);
	registry_free(r);
}

/* Runs fn with stderr going to a file; returns what was written. */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
	char *path = xstrfmt("%s/stderr.txt", dir);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	fflush(stderr);
	dup2(fd, 2);
	close(fd);
	fn(arg);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	struct buf b = BUF_INIT;
	assert_int_equal(buf_read_file(&b, path), 0);
	free(path);
	return buf_detach(&b, NULL);
}

struct tls_run {
	const char *pwfile;
	int ping_rc, kind;
	char *msg;
};

static void tls_ping(void *arg)
{
	struct tls_run *t = arg;
	struct config cfg;
	struct registry *r = NULL;
	char d[DIGEST_LEN];
	tls_config(&cfg, t->pwfile);
	error_clear();
	t->ping_rc = registry_open(&r, &cfg, tls_host);
	if (t->ping_rc == 0) {
		t->ping_rc = registry_ping(r);
		if (t->ping_rc == 0) {
			/* Credentials carry through to the API calls. */
			digest_bytes("tls blob", 8, d);
			t->ping_rc = registry_upload_bytes(r, "t/tls", "tls blob", 8, d);
			if (t->ping_rc == 0)
				t->ping_rc = registry_blob_exists(r, "t/tls", d) == 1 ? 0 : -1;
		}
	}
	t->kind = error_kind();
	t->msg = xstrfmt("%s\n%s", error_message(), error_hint_text() ? error_hint_text() : "");
	registry_free(r);
}

static void tls_basic_auth_and_ca_file(void **state)
{
	struct tls_run t = { password_file, 0, 0, NULL };
	need_registry();
	log_verbosity = 2;
	char *err = capture_stderr(tls_ping, &t);
	log_verbosity = 0;
	if (t.ping_rc < 0)
		fail_msg("%s", t.msg);
	assert_non_null(strstr(err, "debug: registry"));	/* -vv did log requests */
	assert_null(strstr(err, password));
	assert_null(strstr(err, "Authorization"));
	free(err);
	free(t.msg);

	struct config cfg;
	struct registry *r;
	tls_config(&cfg, password_file);
	r = open_ok(&cfg, tls_host);
	const char *origin = NULL;
	assert_int_equal(registry_has_credentials(r, &origin), 1);
	assert_string_equal(origin, "the config");
	registry_free(r);

	/* No CA file: the system CAs do not know ours. */
	cfg.registry.ca_file = NULL;
	r = open_ok(&cfg, tls_host);
	assert_int_equal(registry_ping(r), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "cannot reach"));
	assert_non_null(strstr(error_message(), "not trusted"));
	registry_free(r);

	/* insecure: the certificate is not checked (the user said so). */
	cfg.registry.insecure = 1;
	r = open_ok(&cfg, tls_host);
	ok(registry_ping(r));
	registry_free(r);
	cfg.registry.insecure = 0;

	/* No credentials: the registry wants them, and says so. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.registry.url = tls_url;
	cfg.registry.ca_file = ca;
	r = open_ok(&cfg, tls_host);
	assert_int_equal(registry_ping(r), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "requires credentials"));
	registry_free(r);
}

static void wrong_password_is_refused_and_never_shown(void **state)
{
	need_registry();
	char *wrong = test_write_file(dir, "wrong", "Wr0ngPassw0rdXYZ\n", 0600);
	struct tls_run t = { wrong, 0, 0, NULL };
	log_verbosity = 2;
	char *err = capture_stderr(tls_ping, &t);
	log_verbosity = 0;
	assert_int_equal(t.ping_rc, -1);
	assert_int_equal(t.kind, PS_EXIT_REGISTRY);
	assert_non_null(strstr(t.msg, "refused the credentials"));
	assert_null(strstr(t.msg, "Wr0ngPassw0rdXYZ"));
	assert_null(strstr(err, "Wr0ngPassw0rdXYZ"));
	assert_null(strstr(t.msg, password));
	free(err);
	free(t.msg);
	free(wrong);

	/* A password source that is not there: a usage error, before any request. */
	struct config cfg;
	struct registry *r = NULL;
	tls_config(&cfg, "/nonexistent/pystrib-password");
	assert_int_equal(registry_open(&r, &cfg, tls_host), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_null(r);
}

static void docker_credential_helper(void **state)
{
	need_registry();
	char *bin = xstrfmt("%s/bin", dir), *cfgdir = xstrfmt("%s/docker", dir);
	test_sh(dir, "mkdir -p bin docker");
	char *script = xstrfmt("#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n"
			       "if [ \"$server\" = \"%s\" ]; then\n"
			       "  printf '{\"ServerURL\":\"%%s\",\"Username\":\"pystrib\","
			       "\"Secret\":\"%%s\"}' \"$server\" \"$(cat %s)\"\n"
			       "else echo 'credentials not found in native keychain'; exit 1; fi\n",
			       tls_host, password_file);
	free(test_write_file(bin, "docker-credential-pystribtest", script, 0755));
	char *json = xstrfmt("{\"auths\":{},\"credHelpers\":{\"%s\":\"pystribtest\"}}", tls_host);
	free(test_write_file(cfgdir, "config.json", json, 0600));
	char *old_path = xstrdup(getenv("PATH"));
	char *path = xstrfmt("%s:%s", bin, old_path);
	setenv("PATH", path, 1);
	setenv("DOCKER_CONFIG", cfgdir, 1);

	struct config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.registry.url = tls_url;
	cfg.registry.ca_file = ca;
	struct registry *r = open_ok(&cfg, tls_host);
	const char *origin;
	assert_int_equal(registry_has_credentials(r, &origin), 1);
	assert_non_null(strstr(origin, "helper"));
	ok(registry_ping(r));
	registry_free(r);

	setenv("PATH", old_path, 1);
	unsetenv("DOCKER_CONFIG");
	free(old_path);
	free(path);
	free(json);
	free(script);
	free(bin);
	free(cfgdir);
}

static void unreachable_and_refused_schemes(void **state)
{
	struct config cfg;
	struct registry *r = NULL;
	need_registry();

	/* Nothing listens: retried, then one line naming the registry. */
	int port = test_free_port();
	char *host = xstrfmt("127.0.0.1:%d", port), *url = xstrfmt("http://%s", host);
	memset(&cfg, 0, sizeof(cfg));
	cfg.registry.url = url;
	r = open_ok(&cfg, host);
	double t0 = now_monotonic();
	assert_int_equal(registry_ping(r), -1);
	double took = now_monotonic() - t0;
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "cannot reach registry"));
	assert_non_null(strstr(error_message(), host));
	assert_non_null(error_hint_text());
	assert_int_equal(registry_requests(r), 4);	/* 4 attempts */
	assert_true(took >= 2.0);			/* 0.3 + 0.6 + 1.2 s of backoff */
	registry_free(r);
	free(url);
	free(host);

	/* Plain http to a host that is not loopback: refused unless insecure. */
	cfg.registry.url = "http://registry.example.com:5000";
	assert_int_equal(registry_open(&r, &cfg, "registry.example.com:5000"), -1);
	assert_int_equal(error_kind(), PS_EXIT_USAGE);
	assert_non_null(strstr(error_hint_text(), "insecure"));
	cfg.registry.insecure = 1;
	r = open_ok(&cfg, "registry.example.com:5000");
	registry_free(r);
	cfg.registry.url = "ftp://127.0.0.1:21";
	assert_int_equal(registry_open(&r, &cfg, "127.0.0.1:21"), -1);
	assert_int_equal(registry_open(&r, &cfg, "bad host!"), -1);
}

/* ---- faults, through integration/faultproxy.py ----------------------- */

static char *proxy_host, *proxy_url;

/* Starts the fault proxy in front of the plain registry with the given rules. */
static void start_proxy(const char *const *rules)
{
	char *script = xstrfmt("%s/integration/faultproxy.py", source_dir());
	char *port_file = xstrfmt("%s/proxy.port", dir), *log = xstrfmt("%s/proxy.log", dir);
	const char *argv[32] = { "python3", script, "--target", plain_host, "--port-file",
				 port_file, "--log", log };
	size_t n = 8;
	for (; *rules && n + 3 < ARRAY_SIZE(argv); rules += 2) {
		argv[n++] = rules[0];
		argv[n++] = rules[1];
	}
	argv[n] = NULL;
	unlink(port_file);
	unlink(log);
	proxy_pid = fork();
	assert_true(proxy_pid >= 0);
	if (proxy_pid == 0) {
		execv("/usr/bin/python3", (char *const *)argv);
		_exit(127);
	}
	struct buf b = BUF_INIT;
	for (int i = 0; i < 200 && buf_read_file(&b, port_file) < 0; i++)
		usleep(50000);
	assert_true(b.len > 0);
	buf_rtrim(&b);
	proxy_host = xstrfmt("127.0.0.1:%s", b.ptr);
	proxy_url = xstrfmt("http://%s", proxy_host);
	buf_release(&b);
	free(script);
	free(port_file);
	free(log);
}

static void stop_proxy(void)
{
	stop(&proxy_pid);
	free(proxy_host);
	free(proxy_url);
	proxy_host = proxy_url = NULL;
}

static char *proxy_log(void)
{
	char *path = xstrfmt("%s/proxy.log", dir);
	struct buf b = BUF_INIT;
	buf_read_file(&b, path);
	free(path);
	return buf_detach(&b, NULL);
}

static void dropped_uploads_resume(void **state)
{
	static const char *const rules[] = {
		"--drop", "PATCH /v2/t/drop-chunked/blobs/uploads/ 3 3000",
		"--drop", "PUT /v2/t/drop-mono/blobs/uploads/ 1 50000",
		"--drop", "PUT /v2/t/drop-always/blobs/uploads/ 1 100 0",
		"--status", "PATCH /v2/t/resume/blobs/uploads/ 3 503",
		NULL,
	};
	struct config cfg;
	char d[DIGEST_LEN], back_d[DIGEST_LEN];

	need_registry();
	start_proxy(rules);
	memset(&cfg, 0, sizeof(cfg));
	cfg.registry.url = proxy_url;

	/*
	 * Chunked: the third PATCH is cut after 3000 bytes. distribution then
	 * holds bytes its upload state does not account for and cancels the
	 * upload when asked where it stands, so the blob starts over.
	 */
	setenv("PYSTRIB_REGISTRY_CHUNK", "10000", 1);
	struct registry *r = open_ok(&cfg, proxy_host);
	unsetenv("PYSTRIB_REGISTRY_CHUNK");
	char *path = random_file("drop-chunked.bin", 45000, 3, d);
	ok(registry_upload_file(r, "t/drop-chunked", path, d, 45000, NULL, NULL));
	assert_int_equal(registry_blob_exists(r, "t/drop-chunked", d), 1);
	char *back = xstrfmt("%s/drop.back", dir);
	ok(registry_get_blob_file(r, "t/drop-chunked", d, 45000, back));
	assert_int_equal(digest_file(back, back_d), 0);
	assert_string_equal(back_d, d);
	free(path);

	/* A 503 between chunks: resumed from the Range the registry reports. */
	path = random_file("resume.bin", 45000, 6, d);
	ok(registry_upload_file(r, "t/resume", path, d, 45000, NULL, NULL));
	assert_int_equal(registry_blob_exists(r, "t/resume", d), 1);
	registry_free(r);
	free(path);

	/* Monolithic: the PUT is cut after 50000 bytes, and the blob still arrives whole. */
	r = open_ok(&cfg, proxy_host);
	path = random_file("drop-mono.bin", 200000, 4, d);
	ok(registry_upload_file(r, "t/drop-mono", path, d, 200000, NULL, NULL));
	assert_int_equal(registry_blob_exists(r, "t/drop-mono", d), 1);
	free(path);

	/* Cut every time: gives up after 4 attempts, one line, nothing stored. */
	path = random_file("drop-always.bin", 5000, 5, d);
	assert_int_equal(registry_upload_file(r, "t/drop-always", path, d, 5000, NULL, NULL), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "after 4 attempts"));
	assert_null(strchr(error_message(), '\n'));
	assert_int_equal(registry_blob_exists(r, "t/drop-always", d), 0);
	registry_free(r);
	free(path);

	char *log = proxy_log();
	/* The cut chunk: the state asked for, then a new upload from byte 0. */
	const char *p = strstr(log, "content-range=20000-29999 -> dropped after 3000");
	assert_non_null(p);
	assert_non_null((p = strstr(p, "GET /v2/t/drop-chunked/blobs/uploads/")));
	assert_non_null((p = strstr(p, "POST /v2/t/drop-chunked/blobs/uploads/")));
	assert_non_null(strstr(p, "content-range=0-9999 -> forwarded"));
	assert_non_null(strstr(log, "-> dropped after 50000"));
	/* The 503 chunk: the state asked for, the same chunk sent again, no new upload. */
	p = strstr(log, "PATCH /v2/t/resume/");
	assert_non_null(p);
	assert_non_null((p = strstr(p, "content-range=20000-29999 -> status 503")));
	assert_non_null((p = strstr(p, "GET /v2/t/resume/blobs/uploads/")));
	assert_non_null(strstr(p, "content-range=20000-29999 -> forwarded"));
	int posts = 0;
	for (const char *q = log; (q = strstr(q, "POST /v2/t/resume/")); q++)
		posts++;
	assert_int_equal(posts, 1);
	free(log);
	free(back);
	stop_proxy();
}

static void server_errors_are_retried(void **state)
{
	static const char *const rules[] = {
		"--status", "PUT /v2/t/retry/manifests/ 1 503 2",
		"--status", "HEAD /v2/t/retry/blobs/ 1 502",
		"--status", "GET /v2/t/down/manifests/ 1 503 0",
		"--status", "POST /v2/t/denied/blobs/uploads/ 1 403 0",
		NULL,
	};
	struct config cfg;
	struct buf body = BUF_INIT;
	char *mt = NULL, d[DIGEST_LEN];

	need_registry();
	start_proxy(rules);
	memset(&cfg, 0, sizeof(cfg));
	cfg.registry.url = proxy_url;
	struct registry *r = open_ok(&cfg, proxy_host);

	char *m = push_parts(r, "t/retry", "retry layer");
	char ld[DIGEST_LEN];
	digest_bytes("retry layer", 11, ld);
	assert_int_equal(registry_blob_exists(r, "t/retry", ld), 1);	/* after a 502 */
	ok(registry_put_manifest(r, "t/retry", "v1", schema2, m, strlen(m)));	/* after two 503 */
	ok(registry_get_manifest(r, "t/retry", "v1", &body, &mt, d));
	assert_string_equal(body.ptr, m);
	free(mt);
	mt = NULL;

	/* Always 503: four attempts, then one line saying so. */
	unsigned before = registry_requests(r);
	assert_int_equal(registry_get_manifest(r, "t/down", "v1", &body, &mt, d), -1);
	assert_int_equal(registry_requests(r) - before, 4);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "HTTP 503"));
	assert_non_null(strstr(error_message(), "tried 4 times"));

	/* A 4xx is not retried. */
	before = registry_requests(r);
	assert_int_equal(registry_upload_bytes(r, "t/denied", "x", 1, ld), -1);
	assert_int_equal(registry_requests(r) - before, 1);
	assert_non_null(strstr(error_message(), "denied"));

	char *log = proxy_log();
	assert_non_null(strstr(log, "PUT /v2/t/retry/manifests/v1 content-range=- -> status 503"));
	assert_non_null(strstr(log, "PUT /v2/t/retry/manifests/v1 content-range=- -> forwarded"));
	free(log);
	free(m);
	buf_release(&body);
	registry_free(r);
	stop_proxy();
}

/* ---- Bearer tokens, against the token-auth registry ------------------ */

static void bearer_config(struct config *cfg, const char *pwfile)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->registry.url = bearer_url;
	cfg->registry.username = pwfile ? "pystrib" : NULL;
	cfg->registry.password_file = pwfile;
}

/* Lines of the token service's request log that contain `what`. */
static int token_requests(const char *what)
{
	char *path = xstrfmt("%s/token/requests.log", dir);
	struct buf b = BUF_INIT;
	int n = 0;
	if (buf_read_file(&b, path) == 0)
		for (const char *p = b.ptr; (p = strstr(p, what)); p += strlen(what))
			n++;
	buf_release(&b);
	free(path);
	return n;
}

static void bearer_tokens_per_scope(void **state)
{
	struct config cfg;
	struct buf body = BUF_INIT;
	char *mt = NULL, d[DIGEST_LEN], want[DIGEST_LEN];

	need_registry();
	bearer_config(&cfg, password_file);
	struct registry *r = open_ok(&cfg, bearer_host);
	ok(registry_ping(r));
	assert_int_equal(registry_authenticated(r), 1);
	assert_int_equal(token_requests("GET user=pystrib scope=\n"), 1);

	/* Push (pull,push scope) then read back: one token per scope, cached. */
	char *m = push_parts(r, "t/bearer", "bearer layer");
	digest_bytes(m, strlen(m), want);
	ok(registry_put_manifest(r, "t/bearer", "v1", schema2, m, strlen(m)));
	ok(registry_get_manifest(r, "t/bearer", "v1", &body, &mt, d));
	assert_string_equal(d, want);
	free(mt);
	mt = NULL;
	ok(registry_get_manifest(r, "t/bearer", want, &body, &mt, d));
	free(mt);
	mt = NULL;
	assert_int_equal(token_requests("scope=repository:t/bearer:pull,push\n"), 1);
	assert_int_equal(token_requests("scope=repository:t/bearer:pull\n"), 1);

	/* A mount asks for both repositories in one token. */
	char ld[DIGEST_LEN];
	digest_bytes("bearer layer", 12, ld);
	assert_int_equal(registry_mount_blob(r, "t/bearer2", ld, "t/bearer"), 1);
	assert_int_equal(token_requests("scope=repository:t/bearer2:pull,push,"
					"repository:t/bearer:pull\n"), 1);

	/* A token the registry refuses (it grants nothing) is fetched again once. */
	free(test_write_file(dir, "token/weak", "", 0644));
	assert_int_equal(registry_blob_exists(r, "t/bearer3", ld), 0);
	assert_int_equal(token_requests("scope=repository:t/bearer3:pull\n"), 2);
	assert_int_equal(registry_blob_exists(r, "t/bearer3", ld), 0);
	assert_int_equal(token_requests("scope=repository:t/bearer3:pull\n"), 2);

	/*
	 * A token that expires is renewed before it is used again, not after a
	 * 401 (the registry gives an expired token a minute's leeway, so only
	 * renewing by expires_in asks the token service a second time here).
	 */
	free(test_write_file(dir, "token/lifetime", "2", 0644));
	assert_int_equal(registry_blob_exists(r, "t/short", ld), 0);
	assert_int_equal(registry_blob_exists(r, "t/short", ld), 0);
	assert_int_equal(token_requests("scope=repository:t/short:pull\n"), 1);
	sleep(2);
	assert_int_equal(registry_blob_exists(r, "t/short", ld), 0);
	assert_int_equal(token_requests("scope=repository:t/short:pull\n"), 2);
	char *lifetime = xstrfmt("%s/token/lifetime", dir);
	unlink(lifetime);
	free(lifetime);
	registry_free(r);

	/* Anonymous: pull is granted, push is not, and the error says what to do. */
	bearer_config(&cfg, NULL);
	r = open_ok(&cfg, bearer_host);
	assert_int_equal(registry_blob_exists(r, "t/bearer", ld), 1);
	assert_int_equal(registry_upload_bytes(r, "t/anon", "bearer layer", 12, ld), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "requires credentials"));
	assert_int_equal(registry_authenticated(r), 0);
	registry_free(r);

	free(m);
	buf_release(&body);
}

static void bearer_wrong_password_and_identity_token(void **state)
{
	struct config cfg;
	need_registry();
	char *wrong = test_write_file(dir, "wrong-bearer", "Wr0ngBearerPw\n", 0600);
	bearer_config(&cfg, wrong);
	struct registry *r = open_ok(&cfg, bearer_host);
	assert_int_equal(registry_ping(r), -1);
	assert_int_equal(error_kind(), PS_EXIT_REGISTRY);
	assert_non_null(strstr(error_message(), "refused the credentials"));
	assert_null(strstr(error_message(), "Wr0ngBearerPw"));
	assert_null(strstr(error_hint_text(), "Wr0ngBearerPw"));
	registry_free(r);
	free(wrong);

	/* docker login's identity token: traded through the OAuth2 POST. */
	char *cfgdir = xstrfmt("%s/docker-id", dir);
	char *json = xstrfmt("{\"auths\":{\"%s\":{\"auth\":\"\",\"identitytoken\":"
			     "\"refresh-0123456789\"}}}", bearer_host);
	test_sh(dir, "mkdir -p docker-id");
	free(test_write_file(cfgdir, "config.json", json, 0600));
	setenv("DOCKER_CONFIG", cfgdir, 1);
	bearer_config(&cfg, NULL);
	r = open_ok(&cfg, bearer_host);
	char d[DIGEST_LEN];
	digest_bytes("via refresh", 11, d);
	ok(registry_upload_bytes(r, "t/refresh", "via refresh", 11, d));
	assert_int_equal(registry_blob_exists(r, "t/refresh", d), 1);
	assert_true(token_requests("POST user=<refresh> scope=repository:t/refresh:pull,push") >= 1);
	registry_free(r);
	unsetenv("DOCKER_CONFIG");
	free(cfgdir);
	free(json);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(ping_plain_and_count_requests),
		cmocka_unit_test(blobs_from_memory_and_file),
		cmocka_unit_test(chunked_upload),
		cmocka_unit_test(mount_across_repositories),
		cmocka_unit_test(manifests_by_tag_and_digest),
		cmocka_unit_test(tls_basic_auth_and_ca_file),
		cmocka_unit_test(wrong_password_is_refused_and_never_shown),
		cmocka_unit_test(docker_credential_helper),
		cmocka_unit_test(unreachable_and_refused_schemes),
		cmocka_unit_test(dropped_uploads_resume),
		cmocka_unit_test(server_errors_are_retried),
		cmocka_unit_test(bearer_tokens_per_scope),
		cmocka_unit_test(bearer_wrong_password_and_identity_token),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
