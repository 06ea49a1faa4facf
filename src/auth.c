#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "error.h"
#include "log.h"

#define HEADER_MAX 8192
#define HELPER_OUT_MAX (64 << 10)
#define DOCKER_CONFIG_MAX (4 << 20)

void secret_wipe(void *p, size_t n)
{
	volatile unsigned char *v = p;
	while (n--)
		*v++ = 0;
}

void secret_free(char *s)
{
	if (s) {
		volatile char *p = s;
		while (*p)
			*p++ = 0;
		free(s);
	}
}

/* ---- WWW-Authenticate --------------------------------------------- */

static int is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static const char *skip_ws(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* A token or quoted-string value at p into v; returns the end, or NULL. */
static const char *parse_value(const char *p, struct buf *v)
{
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1])
				p++;
			buf_addch(v, *p);
		}
		return *p == '"' ? p + 1 : NULL;
	}
	while (is_tchar(*p) || *p == '/' || *p == ':' || *p == '=')
		buf_addch(v, *p++);
	return v->len ? p : NULL;
}

int auth_challenge_parse(struct auth_challenge *c, const char *header)
{
	struct auth_challenge r = { 0 };
	struct buf name = BUF_INIT, val = BUF_INIT;
	const char *p = skip_ws(header);
	size_t n = 0;

	if (strlen(header) > HEADER_MAX)
		return -1;
	while (is_tchar(p[n]))
		n++;
	if (!n || (p[n] && p[n] != ' ' && p[n] != '\t' && p[n] != ','))
		return -1;
	r.scheme = xstrndup(p, n);
	for (char *s = r.scheme; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	p = skip_ws(p + n);
	while (*p) {
		buf_reset(&name);
		buf_reset(&val);
		while (is_tchar(*p))
			buf_addch(&name, *p++);
		p = skip_ws(p);
		if (!name.len || *p != '=')
			break;	/* a token68 or the next challenge: done with this one */
		p = parse_value(skip_ws(p + 1), &val);
		if (!p)
			break;
		char **slot = !strcasecmp(name.ptr, "realm") ? &r.realm
			    : !strcasecmp(name.ptr, "service") ? &r.service
			    : !strcasecmp(name.ptr, "scope") ? &r.scope
			    : !strcasecmp(name.ptr, "error") ? &r.error : NULL;
		if (slot && !*slot)
			*slot = xstrdup(val.ptr);
		p = skip_ws(p);
		if (*p != ',')
			break;
		p = skip_ws(p + 1);
	}
	buf_release(&name);
	buf_release(&val);
	*c = r;
	return 0;
}

void auth_challenge_release(struct auth_challenge *c)
{
	free(c->scheme);
	free(c->realm);
	free(c->service);
	free(c->scope);
	free(c->error);
	memset(c, 0, sizeof(*c));
}

int auth_token_parse(const char *body, size_t len, char **token, long *expires_in)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	const char *t = json_string_value(json_object_get(j, "token"));
	if (!t || !*t)
		t = json_string_value(json_object_get(j, "access_token"));
	int ret = t && *t ? 0 : -1;
	/* It goes into an Authorization header: printable ASCII only. */
	for (const char *p = ret ? "" : t; *p; p++)
		if (*p <= ' ' || *p >= 0x7f)
			ret = -1;
	if (!ret) {
		*token = xstrdup(t);
		json_t *e = json_object_get(j, "expires_in");
		double secs = json_is_number(e) ? json_number_value(e) : 0;
		*expires_in = secs >= 1 && secs < 366.0 * 86400 ? (long)secs : 60;
	}
	json_decref(j);
	return ret;
}

void credentials_release(struct credentials *c)
{
	free(c->username);
	secret_free(c->password);
	secret_free(c->identity_token);
	memset(c, 0, sizeof(*c));
}

/* ---- the config's own credentials ---------------------------------- */

static int config_credentials(const struct registry_config *rc, struct credentials *out)
{
	char *pass = NULL;

	if (rc->password_env) {
		const char *v = getenv(rc->password_env);
		if (!v || !*v) {
			error_set(PS_EXIT_USAGE, "the registry password variable '%s' is not set",
				  rc->password_env);
			return error_hint("export it, or change [registry] password_env");
		}
		pass = xstrdup(v);
	} else if (rc->password_file) {
		char *path = expand_home(rc->password_file);
		struct buf b;
		buf_init(&b, 64 << 10);
		if (buf_read_file(&b, path) < 0) {
			error_set(PS_EXIT_USAGE, "cannot read the registry password file '%s': %s",
				  path, strerror(errno));
			free(path);
			secret_free(buf_detach(&b, NULL));
			return error_hint("create it (mode 600), or change [registry] password_file");
		}
		free(path);
		buf_rtrim(&b);
		pass = buf_detach(&b, NULL);
	} else if (rc->password) {
		pass = xstrdup(rc->password);
	}
	if (!pass) {
		error_set(PS_EXIT_USAGE, "[registry] username is set but no password");
		return error_hint("set [registry] password_env or password_file");
	}
	out->username = xstrdup(rc->username);
	out->password = pass;
	out->origin = "the config";
	return 0;
}

/* ---- docker's config.json ------------------------------------------ */

/* "https://host/v1/" and "host" both name host. */
static int server_matches(const char *key, const char *registry)
{
	const char *k = key;
	if (!strncmp(k, "https://", 8))
		k += 8;
	else if (!strncmp(k, "http://", 7))
		k += 7;
	size_t n = strcspn(k, "/");
	if (!strcmp(registry, "docker.io"))
		return (n == 15 && !strncmp(k, "index.docker.io", 15)) ||
		       (n == 9 && !strncmp(k, "docker.io", 9)) ||
		       (n == 20 && !strncmp(k, "registry-1.docker.io", 20));
	return n == strlen(registry) && !strncmp(k, registry, n);
}

static int decode_auth(const char *b64, struct credentials *out)
{
	size_t n = strlen(b64);
	unsigned char *dec;
	int len;

	if (n % 4 || n > 8192)
		goto bad;
	dec = xmalloc(n / 4 * 3 + 1);
	len = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
	if (len < 0) {
		free(dec);
		goto bad;
	}
	while (len > 0 && n && b64[n - 1] == '=') {	/* DecodeBlock counts the padding */
		len--;
		n--;
	}
	dec[len] = 0;
	char *colon = memchr(dec, ':', (size_t)len);
	if (!colon || memchr(dec, 0, (size_t)len)) {
		memset(dec, 0, (size_t)len);
		free(dec);
		goto bad;
	}
	out->username = xstrndup((char *)dec, (size_t)(colon - (char *)dec));
	out->password = xstrdup(colon + 1);
	memset(dec, 0, (size_t)len);
	free(dec);
	return 0;
bad:
	error_set(PS_EXIT_USAGE, "the docker config's \"auth\" entry is not base64 of user:password");
	return error_hint("run 'docker login' again, or set [registry] username and password_env");
}

int auth_docker_config_lookup(const char *json, size_t len, const char *registry,
			      struct credentials *out, char **helper)
{
	json_error_t jerr;
	json_t *j = json_loadb(json, len, 0, &jerr), *auths, *v;
	const char *key, *h;
	int ret = 1;

	if (!json_is_object(j)) {
		json_decref(j);
		error_set(PS_EXIT_USAGE, "the docker config is not a JSON object (line %d: %s)",
			  jerr.line, jerr.text);
		return error_hint("fix or remove ~/.docker/config.json");
	}
	json_object_foreach(json_object_get(j, "credHelpers"), key, v) {
		if (server_matches(key, registry) && (h = json_string_value(v)) && *h) {
			*helper = xstrdup(h);
			ret = 2;
			goto out;
		}
	}
	if ((h = json_string_value(json_object_get(j, "credsStore"))) && *h) {
		*helper = xstrdup(h);
		ret = 2;
		goto out;
	}
	auths = json_object_get(j, "auths");
	json_object_foreach(auths, key, v) {
		const char *a, *u, *p, *it;
		struct credentials c = { 0 };
		if (!server_matches(key, registry) || !json_is_object(v))
			continue;
		a = json_string_value(json_object_get(v, "auth"));
		u = json_string_value(json_object_get(v, "username"));
		p = json_string_value(json_object_get(v, "password"));
		it = json_string_value(json_object_get(v, "identitytoken"));
		if (a && *a) {
			if (decode_auth(a, &c) < 0) {
				ret = -1;
				goto out;
			}
		} else if (u && p) {
			c.username = xstrdup(u);
			c.password = xstrdup(p);
		}
		if (it && *it)
			c.identity_token = xstrdup(it);
		if (!c.password && !c.identity_token) {
			credentials_release(&c);
			continue;
		}
		c.origin = "the docker config";
		*out = c;
		ret = 0;
		goto out;
	}
out:
	json_decref(j);
	return ret;
}

/* Writes `in` to the child's stdin, reads its stdout into out; waits. */
static int run_helper(const char *prog, const char *in, struct buf *out, int *status)
{
	int pin[2], pout[2];
	pid_t pid;

	if (pipe2(pin, O_CLOEXEC) < 0)
		return -1;
	if (pipe2(pout, O_CLOEXEC) < 0) {
		close(pin[0]);
		close(pin[1]);
		return -1;
	}
	pid = fork();
	if (pid < 0) {
		close(pin[0]); close(pin[1]); close(pout[0]); close(pout[1]);
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		if (devnull >= 0)
			dup2(devnull, 2);	/* helpers may print the secret's context */
		execlp(prog, prog, "get", (char *)NULL);
		_exit(127);
	}
	close(pin[0]);
	close(pout[1]);
	void (*old)(int) = signal(SIGPIPE, SIG_IGN);
	ssize_t w = write(pin[1], in, strlen(in));
	(void)w;
	close(pin[1]);
	signal(SIGPIPE, old);
	char chunk[4096];
	for (;;) {
		ssize_t r = read(pout[0], chunk, sizeof(chunk));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (buf_add(out, chunk, (size_t)r) < 0)
			break;
	}
	close(pout[0]);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
	return 0;
}

int auth_credential_helper(const char *helper, const char *server, struct credentials *out)
{
	char *prog = xstrfmt("docker-credential-%s", helper);
	struct buf res;
	int status = 0, ret = -1;
	json_t *j = NULL;

	buf_init(&res, HELPER_OUT_MAX);
	for (const char *p = helper; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
			error_set(PS_EXIT_USAGE, "invalid credential helper name '%s' in the docker config",
				  helper);
			goto out;
		}
	}
	if (run_helper(prog, server, &res, &status) < 0) {
		error_set(PS_EXIT_REGISTRY, "cannot run '%s': %s", prog, strerror(errno));
		goto out;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		error_set(PS_EXIT_REGISTRY, "the credential helper '%s' is not installed", prog);
		error_hint("install it, or change credsStore/credHelpers in ~/.docker/config.json");
		goto out;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* "credentials not found in native keychain": anonymous access. */
		ret = 1;
		goto out;
	}
	j = json_loadb(res.ptr, res.len, 0, NULL);
	const char *u = json_string_value(json_object_get(j, "Username"));
	const char *s = json_string_value(json_object_get(j, "Secret"));
	if (!u || !s) {
		error_set(PS_EXIT_REGISTRY, "the credential helper '%s' gave no Username and Secret",
			  prog);
		goto out;
	}
	if (!strcmp(u, "<token>")) {
		out->identity_token = xstrdup(s);
	} else {
		out->username = xstrdup(u);
		out->password = xstrdup(s);
	}
	out->origin = "a docker credential helper";
	ret = 0;
out:
	json_decref(j);
	if (res.len)
		memset(res.ptr, 0, res.len);
	buf_release(&res);
	free(prog);
	return ret;
}

static char *docker_config_path(void)
{
	const char *d = getenv("DOCKER_CONFIG");
	if (d && *d)
		return xstrfmt("%s/config.json", d);
	return expand_home("~/.docker/config.json");
}

int auth_find_credentials(const struct registry_config *rc, const char *registry,
			  struct credentials *out)
{
	struct buf b;
	char *path = NULL, *helper = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if (rc && rc->username)
		return config_credentials(rc, out);
	path = docker_config_path();
	buf_init(&b, DOCKER_CONFIG_MAX);
	if (buf_read_file(&b, path) < 0) {
		if (errno == EFBIG) {
			error_set(PS_EXIT_USAGE, "'%s' is too large", path);
			ret = -1;
		} else {
			ret = 1;	/* no docker config: anonymous */
		}
		goto out;
	}
	ret = auth_docker_config_lookup(b.ptr, b.len, registry, out, &helper);
	if (ret < 0) {
		error_wrap("%s", path);
	} else if (ret == 2) {
		const char *server = !strcmp(registry, "docker.io") ? "https://index.docker.io/v1/"
								     : registry;
		ret = auth_credential_helper(helper, server, out);
		log_debug("registry '%s': credentials %s from docker-credential-%s", registry,
			  ret == 0 ? "found" : "not found", helper);
	} else if (ret == 0) {
		log_debug("registry '%s': credentials from %s", registry, path);
	}
out:
	if (b.len)
		memset(b.ptr, 0, b.len);
	buf_release(&b);
	free(path);
	free(helper);
	return ret;
}
