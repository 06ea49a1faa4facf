#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "shquote.h"
#include "ssh.h"
#include "util.h"

const char cmd_doctor_help[] =
	"usage: pystrib doctor [--remote NAME] [--trust-host]\n"
	"\n"
	"Checks everything a run needs, one line each, with what to do about each\n"
	"failure: the config, the registry (reachable, credentials accepted, base\n"
	"image present), the SSH host (reachable, host key known, login works), the\n"
	"container runtime (or python3 and mpirun for runtime none), the remote work\n"
	"directory, and the GPUs (nvidia-smi) when [remote] gpus is set.\n"
	"\n"
	"The exit code is 0 when everything is fine, else that of the first failed\n"
	"check: 2 config, 3 registry, 4 SSH or remote host.\n"
	"\n"
	"options:\n"
	"  -r, --remote NAME   check the [remote.NAME] section instead of [remote]\n"
	"      --trust-host    if the host's key is not known yet, show its\n"
	"                      fingerprint and record it in known_hosts (a CHANGED\n"
	"                      key is never accepted)\n"
	"  -h, --help          show this help\n"
	"\n"
	"examples:\n"
	"  pystrib doctor\n"
	"  pystrib doctor --remote gpu1 --trust-host\n";

struct doctor {
	int code;		/* exit code of the first failure, 0 if none */
	int tty;
};

enum state { OK, FAIL, SKIP, INFO };

/* One line of the report; fix is shown under a failure. */
static void report(struct doctor *d, enum state st, int code, const char *check,
		   const char *fix, const char *fmt, ...) PRINTF_LIKE(6, 7);
static void report(struct doctor *d, enum state st, int code, const char *check,
		   const char *fix, const char *fmt, ...)
{
	static const char *const names[] = { "ok", "FAIL", "skip", "info" };
	static const char *const json_names[] = { "ok", "fail", "skip", "info" };
	static const char *const colors[] = { "\033[32m", "\033[31;1m", "\033[33m", "\033[36m" };
	struct buf msg = BUF_INIT;
	va_list ap;

	va_start(ap, fmt);
	buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	if (st == FAIL && !d->code)
		d->code = code;
	if (log_json) {
		event_emit("check", "{s:s,s:s,s:s,s:s?}", "check", check, "state", json_names[st],
			   "message", msg.ptr, "fix", st == FAIL ? fix : NULL);
	} else {
		printf("%s%-4s%s  %-11s %s\n", d->tty ? colors[st] : "", names[st],
		       d->tty ? "\033[0m" : "", check, msg.ptr);
		if (st == FAIL && fix)
			printf("      %-11s fix: %s\n", "", fix);
		fflush(stdout);
	}
	buf_release(&msg);
}

/* ---- registry (plain libcurl until registry.h offers the checks) ---- */

struct http {
	long code;
	char *www_auth;
	struct buf body;
	char err[CURL_ERROR_SIZE];
};

static size_t http_header(char *p, size_t size, size_t n, void *ud)
{
	struct http *h = ud;
	size_t len = size * n;
	if (len > 17 && !strncasecmp(p, "WWW-Authenticate:", 17) && !h->www_auth) {
		size_t s = 17, e = len;
		while (s < e && (p[s] == ' ' || p[s] == '\t'))
			s++;
		while (e > s && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' '))
			e--;
		h->www_auth = xstrndup(p + s, e - s);
	}
	return len;
}

static size_t http_body(char *p, size_t size, size_t n, void *ud)
{
	struct http *h = ud;
	return buf_add(&h->body, p, size * n) < 0 ? 0 : size * n;
}

struct creds {
	const char *user;
	char *pass;		/* never printed */
	char *bearer;		/* a token from the registry's token service */
};

static int http_get(const struct registry_config *rc, const char *url, int head,
		    const struct creds *cr, struct http *h)
{
	CURL *curl = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char *auth = NULL;
	int ret;

	memset(h, 0, sizeof(*h));
	buf_init(&h->body, 1 << 20);
	if (!curl)
		return -1;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_NOBODY, head ? 1L : 0L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, h->err);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, http_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	if (rc->ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, rc->ca_file);
	if (rc->insecure) {
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	hdrs = curl_slist_append(hdrs, "Accept: application/vnd.oci.image.index.v1+json, "
				 "application/vnd.oci.image.manifest.v1+json, "
				 "application/vnd.docker.distribution.manifest.list.v2+json, "
				 "application/vnd.docker.distribution.manifest.v2+json");
	if (cr && cr->bearer) {
		auth = xstrfmt("Authorization: Bearer %s", cr->bearer);
		hdrs = curl_slist_append(hdrs, auth);
	} else if (cr && cr->user && cr->pass) {
		curl_easy_setopt(curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(curl, CURLOPT_USERNAME, cr->user);
		curl_easy_setopt(curl, CURLOPT_PASSWORD, cr->pass);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	ret = curl_easy_perform(curl) == CURLE_OK ? 0 : -1;
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &h->code);
	curl_slist_free_all(hdrs);
	if (auth) {
		memset(auth, 0, strlen(auth));
		free(auth);
	}
	curl_easy_cleanup(curl);
	return ret;
}

static void http_release(struct http *h)
{
	free(h->www_auth);
	buf_release(&h->body);
}

/* The value of key="..." in a WWW-Authenticate challenge. */
static char *challenge_param(const char *ch, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = ch; (p = strcasestr(p, key)); p += klen) {
		if ((p == ch || p[-1] == ' ' || p[-1] == ',') && p[klen] == '=' && p[klen + 1] == '"') {
			const char *v = p + klen + 2, *e = strchr(v, '"');
			return e ? xstrndup(v, (size_t)(e - v)) : NULL;
		}
	}
	return NULL;
}

/* Bearer challenge: ask the token service (with the credentials, if any). */
static int fetch_token(const struct registry_config *rc, const char *challenge,
		       const char *scope, struct creds *cr, struct buf *why)
{
	char *realm = challenge_param(challenge, "realm");
	char *service = challenge_param(challenge, "service");
	struct http h;
	CURL *esc = curl_easy_init();
	struct buf url = BUF_INIT;
	int ret = -1;

	if (!realm || !esc) {
		buf_addstr(why, "the registry's token challenge has no realm");
		goto out;
	}
	buf_addf(&url, "%s%s", realm, strchr(realm, '?') ? "&" : "?");
	if (service) {
		char *s = curl_easy_escape(esc, service, 0);
		buf_addf(&url, "service=%s&", s);
		curl_free(s);
	}
	if (scope) {
		char *s = curl_easy_escape(esc, scope, 0);
		buf_addf(&url, "scope=%s", s);
		curl_free(s);
	}
	if (http_get(rc, url.ptr, 0, cr, &h) < 0 || h.code != 200) {
		buf_addf(why, "the token service '%s' answered %s", realm,
			 h.code ? (h.code == 401 ? "401: credentials refused" : "an error")
				: h.err);
	} else {
		json_t *j = json_loads(h.body.ptr, 0, NULL);
		const char *tok = j ? json_string_value(json_object_get(j, "token")) : NULL;
		if (!tok && j)
			tok = json_string_value(json_object_get(j, "access_token"));
		if (tok) {
			cr->bearer = xstrdup(tok);
			ret = 0;
		} else {
			buf_addf(why, "the token service '%s' sent no token", realm);
		}
		json_decref(j);
	}
	http_release(&h);
out:
	buf_release(&url);
	curl_easy_cleanup(esc);
	free(realm);
	free(service);
	return ret;
}

static char *read_password(const struct registry_config *rc)
{
	if (rc->password_env) {
		const char *v = getenv(rc->password_env);
		return v ? xstrdup(v) : NULL;
	}
	if (rc->password_file) {
		char *path = expand_home(rc->password_file);
		struct buf b;
		buf_init(&b, 64 << 10);
		int r = buf_read_file(&b, path);
		free(path);
		if (r < 0) {
			buf_release(&b);
			return NULL;
		}
		buf_rtrim(&b);
		return buf_detach(&b, NULL);
	}
	return rc->password ? xstrdup(rc->password) : NULL;
}

static void free_creds(struct creds *cr)
{
	if (cr->pass) {
		memset(cr->pass, 0, strlen(cr->pass));
		free(cr->pass);
	}
	free(cr->bearer);
	memset(cr, 0, sizeof(*cr));
}

/*
 * GET url (or HEAD), answering a 401 challenge once: Basic with the
 * configured credentials, Bearer through the token service for `scope`.
 * Leaves the final response in h; 0 when a response came, -1 when none.
 */
static int registry_request(const struct registry_config *rc, const char *url, int head,
			    const char *scope, struct creds *cr, struct http *h,
			    struct buf *why)
{
	if (http_get(rc, url, head, cr, h) < 0 && !h->code)
		return -1;
	if (h->code != 401 || !h->www_auth)
		return 0;
	if (!strncasecmp(h->www_auth, "Bearer", 6)) {
		char *challenge = xstrdup(h->www_auth);
		http_release(h);
		int r = fetch_token(rc, challenge, scope, cr, why);
		free(challenge);
		if (r < 0) {
			memset(h, 0, sizeof(*h));
			h->code = 401;
			return 0;
		}
	} else {
		http_release(h);
		if (!cr->user || !cr->pass) {
			memset(h, 0, sizeof(*h));
			h->code = 401;
			return 0;
		}
	}
	return http_get(rc, url, head, cr, h) < 0 && !h->code ? -1 : 0;
}

/* "HOST[:PORT]" of an http(s) URL. */
static char *url_host(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	return xstrndup(p, strcspn(p, "/"));
}

static void check_registry(struct doctor *d, const struct config *cfg)
{
	const struct registry_config *rc = &cfg->registry;
	struct creds cr = { rc->username, read_password(rc), NULL };
	struct buf why = BUF_INIT;
	struct http h;
	char *v2 = NULL;

	if (!rc->url) {
		report(d, FAIL, PS_EXIT_USAGE, "registry", "set [registry] url in the config "
		       "(pystrib config show explains what is set)", "no registry is configured");
		goto out;
	}
	if ((rc->password_env || rc->password_file) && !cr.pass)
		report(d, FAIL, PS_EXIT_USAGE, "registry", rc->password_env
		       ? "export that variable, or change [registry] password_env"
		       : "create the file (mode 600), or change [registry] password_file",
		       "the registry password is not readable from %s '%s'",
		       rc->password_env ? "environment variable" : "file",
		       rc->password_env ? rc->password_env : rc->password_file);
	v2 = xstrfmt("%s/v2/", rc->url);
	if (registry_request(rc, v2, 0, NULL, &cr, &h, &why) < 0) {
		report(d, FAIL, PS_EXIT_REGISTRY, "registry",
		       "start the registry, or correct [registry] url (and ca_file for a private CA)",
		       "cannot reach '%s': %s", rc->url, h.err);
		http_release(&h);
		goto out;
	}
	if (h.code == 200)
		report(d, OK, 0, "registry", NULL, "'%s' answers%s", rc->url,
		       cr.user && cr.pass ? ", credentials accepted" : "");
	else if (h.code == 401)
		report(d, FAIL, PS_EXIT_REGISTRY, "registry",
		       cr.user && cr.pass ? "check [registry] username and the password it names"
		       : "set [registry] username and password_env (or password_file)",
		       "'%s' refused %s%s%s", rc->url,
		       cr.user && cr.pass ? "the credentials" : "access without credentials",
		       why.len ? ": " : "", why.ptr);
	else
		report(d, FAIL, PS_EXIT_REGISTRY, "registry",
		       "check that [registry] url points at a container registry (OCI distribution)",
		       "'%s' answered HTTP %ld to /v2/", rc->url, h.code);
	http_release(&h);
out:
	free(v2);
	buf_release(&why);
	free_creds(&cr);
}

/* Splits a base reference into registry host, repository and tag or digest. */
static int split_ref(const char *ref, char **host, char **repo, char **ver)
{
	const char *slash = strchr(ref, '/'), *rest = ref;
	*host = NULL;
	if (slash && (memchr(ref, '.', (size_t)(slash - ref)) || memchr(ref, ':', (size_t)(slash - ref)) ||
		      !strncmp(ref, "localhost/", 10))) {
		*host = xstrndup(ref, (size_t)(slash - ref));
		rest = slash + 1;
	} else {
		*host = xstrdup("registry-1.docker.io");
	}
	const char *at = strchr(rest, '@'), *colon = strrchr(rest, ':');
	const char *end = at ? at : (colon && !strchr(colon, '/') ? colon : NULL);
	*repo = end ? xstrndup(rest, (size_t)(end - rest)) : xstrdup(rest);
	*ver = end ? xstrdup(end + 1) : xstrdup("latest");
	if (!strcmp(*host, "registry-1.docker.io") && !strchr(*repo, '/')) {
		char *lib = xstrfmt("library/%s", *repo);
		free(*repo);
		*repo = lib;
	}
	return **repo ? 0 : -1;
}

static void check_base(struct doctor *d, const struct config *cfg)
{
	const struct registry_config *rc = &cfg->registry;
	const char *base = cfg->image.base;
	char *host = NULL, *repo = NULL, *ver = NULL, *rhost = NULL, *url = NULL, *scope = NULL;
	struct creds cr = { NULL, NULL, NULL };
	struct buf why = BUF_INIT;
	struct http h;

	if (!base) {
		report(d, FAIL, PS_EXIT_USAGE, "base image", "set [image] base to a reference "
		       "(REGISTRY/REPO:TAG) of an image with Python 3, Open MPI and mpi4py",
		       "no base image is configured");
		return;
	}
	if (split_ref(base, &host, &repo, &ver) < 0) {
		report(d, FAIL, PS_EXIT_USAGE, "base image", "write [image] base as REGISTRY/REPO:TAG",
		       "invalid base image reference '%s'", base);
		goto out;
	}
	/* The configured registry's scheme and credentials serve its own images. */
	rhost = rc->url ? url_host(rc->url) : NULL;
	if (rhost && !strcmp(rhost, host)) {
		url = xstrfmt("%s/v2/%s/manifests/%s", rc->url, repo, ver);
		cr.user = rc->username;
		cr.pass = read_password(rc);
	} else {
		url = xstrfmt("%s://%s/v2/%s/manifests/%s",
			      host_is_loopback(host) ? "http" : "https", host, repo, ver);
	}
	scope = xstrfmt("repository:%s:pull", repo);
	if (registry_request(rc, url, 1, scope, &cr, &h, &why) < 0)
		report(d, FAIL, PS_EXIT_REGISTRY, "base image", "check [image] base and that its "
		       "registry is reachable", "cannot reach the registry of '%s': %s", base, h.err);
	else if (h.code == 200)
		report(d, OK, 0, "base image", NULL, "'%s' is present", base);
	else if (h.code == 404)
		report(d, FAIL, PS_EXIT_REGISTRY, "base image", "push the base image there "
		       "(dockerfiles/ has ready ones), or correct [image] base",
		       "'%s' is not in its registry", base);
	else if (h.code == 401 || h.code == 403)
		report(d, FAIL, PS_EXIT_REGISTRY, "base image", "check the registry credentials "
		       "([registry] username, password_env)", "access to '%s' refused (HTTP %ld)%s%s",
		       base, h.code, why.len ? ": " : "", why.ptr);
	else
		report(d, FAIL, PS_EXIT_REGISTRY, "base image", "check [image] base",
		       "the registry answered HTTP %ld for '%s'", h.code, base);
	http_release(&h);
out:
	free_creds(&cr);
	buf_release(&why);
	free(host);
	free(repo);
	free(ver);
	free(rhost);
	free(url);
	free(scope);
}

/* ---- SSH and the remote host --------------------------------------- */

static struct ssh_conn *check_ssh(struct doctor *d, const struct config *cfg, int trust)
{
	struct ssh_target t = SSH_TARGET_INIT;
	struct ssh_conn *c = NULL;
	int rc;

	if (ssh_target_from_config(&t, cfg) < 0) {
		const char *hint = error_hint_text();
		report(d, FAIL, error_kind(), "ssh", hint, "%s", error_message());
		error_clear();
		goto out;
	}
	rc = ssh_conn_open(&c, &t, 0);
	if (rc == SSH_R_HOSTKEY_UNKNOWN && trust) {
		error_clear();
		rc = ssh_conn_open(&c, &t, SSH_ACCEPT_NEW_HOSTKEY);
		if (rc == 0) {
			report(d, OK, 0, "ssh", NULL, "'%s' reachable", ssh_conn_name(c));
			report(d, OK, 0, "host key", NULL, "%s recorded as trusted (--trust-host)",
			       ssh_conn_fingerprint(c));
			report(d, OK, 0, "login", NULL, "logged in");
			goto out;
		}
	}
	if (rc == SSH_R_UNREACHABLE || (rc < 0 && rc != SSH_R_HOSTKEY_UNKNOWN &&
					rc != SSH_R_HOSTKEY_CHANGED && rc != SSH_R_AUTH)) {
		report(d, FAIL, error_kind() ? (int)error_kind() : PS_EXIT_REMOTE, "ssh",
		       error_hint_text(), "%s", error_message());
		report(d, SKIP, 0, "host key", NULL, "not checked: no connection");
		report(d, SKIP, 0, "login", NULL, "not checked: no connection");
		goto out;
	}
	char *name = xstrfmt("%s%s%s:%d", t.user ? t.user : "", t.user ? "@" : "", t.host,
			     t.port ? t.port : 22);
	report(d, OK, 0, "ssh", NULL, "'%s' reachable", c ? ssh_conn_name(c) : name);
	free(name);
	if (rc == SSH_R_HOSTKEY_UNKNOWN || rc == SSH_R_HOSTKEY_CHANGED) {
		report(d, FAIL, PS_EXIT_REMOTE, "host key", error_hint_text(), "%s", error_message());
		report(d, SKIP, 0, "login", NULL, "not checked: the host key is not trusted");
		goto out;
	}
	if (rc == 0)
		report(d, OK, 0, "host key", NULL, "%s is known", ssh_conn_fingerprint(c));
	else
		report(d, OK, 0, "host key", NULL, "known");
	if (rc == SSH_R_AUTH)
		report(d, FAIL, PS_EXIT_REMOTE, "login", error_hint_text(), "%s", error_message());
	else
		report(d, OK, 0, "login", NULL, "logged in");
out:
	error_clear();
	ssh_target_release(&t);
	return c;
}

/* Runs argv on the remote (after `setup` lines when given); first line of stdout. */
static int remote_line(struct ssh_conn *c, const char *setup, const char *const *argv,
		       const char *program, char **line)
{
	struct buf cmd = BUF_INIT, out;
	int ret;

	buf_init(&out, 1 << 20);
	if (setup)
		buf_addf(&cmd, "%s\n", setup);
	shquote_argv(&cmd, argv);
	ret = ssh_conn_run(c, cmd.ptr, program, &out);
	if (ret == 0) {
		out.ptr[strcspn(out.ptr, "\n")] = '\0';
		*line = xstrdup(out.ptr);
	}
	buf_release(&cmd);
	buf_release(&out);
	return ret;
}

static void check_runtime(struct doctor *d, struct ssh_conn *c, const struct remote_config *r)
{
	static const char *const docker[] = { "docker", "version", "--format",
		"{{.Client.Version}} (server {{.Server.Version}})", NULL };
	static const char *const podman[] = { "podman", "version", "--format",
		"{{.Client.Version}}", NULL };
	const char *python[] = { r->python ? r->python : "python3", "--version", NULL };
	static const char *const mpirun[] = { "mpirun", "--version", NULL };
	char *line = NULL;

	if (r->runtime == RUNTIME_NONE) {
		if (remote_line(c, r->setup, python, python[0], &line) == 0)
			report(d, OK, 0, "python", NULL, "%s", line);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "python", error_hint_text(), "%s",
			       error_message());
		free(line);
		line = NULL;
		if (remote_line(c, r->setup, mpirun, "mpirun", &line) == 0)
			report(d, OK, 0, "mpirun", NULL, "%s", line);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "mpirun", error_hint_text(), "%s",
			       error_message());
	} else {
		const char *const *argv = r->runtime == RUNTIME_DOCKER ? docker : podman;
		if (remote_line(c, NULL, argv, argv[0], &line) == 0)
			report(d, OK, 0, "runtime", NULL, "%s %s", argv[0], line);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "runtime", error_hint_text() ?
			       error_hint_text() : "start the engine on the host and let the SSH "
			       "user use it, or set [remote] runtime", "%s", error_message());
		report(d, INFO, 0, "mpirun", NULL, "runs inside the image (checked when a job starts)");
	}
	free(line);
	error_clear();
}

static void check_workdir(struct doctor *d, struct ssh_conn *c, const struct remote_config *r)
{
	struct buf cmd = BUF_INIT, out;
	const char *workdir = r->workdir ? r->workdir : "~/.pystrib";

	buf_init(&out, 1 << 16);
	buf_addstr(&cmd, "mkdir -p ");
	shquote_path(&cmd, workdir);
	buf_addstr(&cmd, " && test -w ");
	shquote_path(&cmd, workdir);
	buf_addstr(&cmd, " && df -Pk ");
	shquote_path(&cmd, workdir);
	buf_addstr(&cmd, " | awk 'NR==2 {print $4}'");
	if (ssh_conn_run(c, cmd.ptr, "mkdir", &out) < 0) {
		report(d, FAIL, PS_EXIT_REMOTE, "workdir", "set [remote] workdir to a directory "
		       "the SSH user may write", "%s", error_message());
	} else {
		long kb = atol(out.ptr);
		if (kb > 0 && kb < 1024 * 1024)
			report(d, FAIL, PS_EXIT_REMOTE, "workdir", "free space on the host or point "
			       "[remote] workdir elsewhere", "'%s' has only %ld MiB free",
			       workdir, kb / 1024);
		else
			report(d, OK, 0, "workdir", NULL, "'%s' writable, %.1f GiB free", workdir,
			       (double)kb / (1024 * 1024));
	}
	error_clear();
	buf_release(&cmd);
	buf_release(&out);
}

static void check_gpus(struct doctor *d, struct ssh_conn *c, const struct remote_config *r)
{
	static const char *const smi[] = { "nvidia-smi", "-L", NULL };
	struct buf cmd = BUF_INIT, out;

	if (!r->gpus) {
		report(d, SKIP, 0, "gpus", NULL, "none requested ([remote] gpus is not set)");
		return;
	}
	buf_init(&out, 1 << 20);
	shquote_argv(&cmd, smi);
	if (ssh_conn_run(c, cmd.ptr, "nvidia-smi", &out) < 0) {
		report(d, FAIL, PS_EXIT_REMOTE, "gpus", "install the NVIDIA driver on the host, or "
		       "unset [remote] gpus", "%s", error_message());
	} else {
		int n = 0;
		for (const char *p = out.ptr; (p = strstr(p, "GPU ")); p += 4)
			if (p == out.ptr || p[-1] == '\n')
				n++;
		if (n)
			report(d, OK, 0, "gpus", NULL, "%d GPU%s (%s requested)", n, n == 1 ? "" : "s",
			       r->gpus);
		else
			report(d, FAIL, PS_EXIT_REMOTE, "gpus", "check the driver with nvidia-smi on "
			       "the host, or unset [remote] gpus", "nvidia-smi lists no GPU");
	}
	error_clear();
	buf_release(&cmd);
	buf_release(&out);
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "remote", required_argument, 0, 'r' },
		{ "trust-host", no_argument, 0, 'T' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	struct doctor d = { 0, isatty(1) && !log_json };
	const char *remote = NULL;
	struct ssh_conn *c = NULL;
	struct config cfg;
	int ch, trust = 0;

	while ((ch = cli_getopt(argc, argv, "r:", opts, cmd_doctor_help)) != -1) {
		switch (ch) {
		case CLI_HELP: return 0;
		case CLI_ERROR: return PS_EXIT_USAGE;
		case 'r': remote = optarg; break;
		case 'T': trust = 1; break;
		}
	}
	if (optind < argc)
		return cli_usage_error(cmd_doctor_help, "doctor takes no arguments");

	if (config_load(&cfg, cli.config_file, remote) < 0) {
		report(&d, FAIL, PS_EXIT_USAGE, "config", error_hint_text() ? error_hint_text()
		       : "'pystrib config show' explains each setting", "%s", error_message());
		error_clear();
		goto out;
	}
	report(&d, OK, 0, "config", NULL, "loaded; remote %s%s%shost '%s' (from %s)",
	       remote ? "'" : "", remote ? remote : "", remote ? "' " : "",
	       cfg.remote.host ? cfg.remote.host : "(none)",
	       config_origin(&cfg, "remote.host"));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	check_registry(&d, &cfg);
	check_base(&d, &cfg);
	c = check_ssh(&d, &cfg, trust);
	if (c) {
		check_runtime(&d, c, &cfg.remote);
		check_workdir(&d, c, &cfg.remote);
		check_gpus(&d, c, &cfg.remote);
	} else {
		report(&d, SKIP, 0, "runtime", NULL, "not checked: no SSH login");
	}
	ssh_conn_free(c);
	curl_global_cleanup();
out:
	config_release(&cfg);
	if (!log_json)
		printf("%s\n", d.code ? "some checks failed" : "all checks passed");
	return d.code;
}
