#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "error.h"
#include "log.h"
#include "ref.h"
#include "util.h"

#define MANIFEST_MAX ((size_t)4 << 20)
#define BLOB_MAX_DEFAULT ((size_t)16 << 20)
#define TOKEN_MAX ((size_t)1 << 20)
#define ERRBODY_MAX ((size_t)16 << 10)
#define HEADER_VALUE_MAX 8192
#define ATTEMPTS 4
#define BACKOFF_FIRST 0.3
#define CHUNK_DEFAULT ((uint64_t)32 << 20)

static const char manifest_accept[] =
	"Accept: application/vnd.oci.image.index.v1+json, "
	"application/vnd.oci.image.manifest.v1+json, "
	"application/vnd.docker.distribution.manifest.list.v2+json, "
	"application/vnd.docker.distribution.manifest.v2+json";

struct token {
	char *scope;
	char *value;
	double use_until;	/* now_monotonic() time; a little before it expires */
};

enum auth_scheme { AUTH_NONE, AUTH_BASIC, AUTH_BEARER };

struct registry {
	CURL *curl;
	char *host;		/* as the caller named it */
	char *base;		/* "https://host[:port]", no trailing slash */
	char *ca_file;
	int insecure;		/* [registry] insecure, for the configured registry only */
	struct credentials cred;
	int have_cred;
	enum auth_scheme scheme;
	char *realm, *service;	/* of the last Bearer challenge */
	struct token *tokens;
	size_t ntokens;
	unsigned requests;
	int authenticated;	/* a request with our credentials was accepted */
	uint64_t chunk;
	char errbuf[CURL_ERROR_SIZE];
};

/* An upload body: a region of a file or of memory, read as curl asks. */
struct source {
	int fd;
	const unsigned char *mem;
	uint64_t off, len, pos;
	uint64_t total;		/* for progress: of the whole blob */
	registry_progress_fn *fn;
	void *fn_data;
	int read_errno;		/* reading fd failed: a local error, not the registry's */
};

struct req {
	const char *method;
	const char *url;
	const char *scope;	/* Bearer scope(s), space-separated; NULL for none */
	const char *content_type;
	const char *content_range;
	int accept_manifest;
	int follow;		/* follow redirects (GET, HEAD) */
	int no_retry;		/* uploads resume on their own */
	int token_request;	/* to a token service: Basic credentials, no 401 dance */
	struct source *src;
	struct buf *body;	/* the success body, capped; NULL: discarded */
	int out_fd;		/* or the success body into this file, */
	uint64_t out_max;	/* ... at most this many bytes of it */
	uint64_t out_len;
	int out_toobig;
	struct digest dg;	/* ... hashed on the way */
	int dg_live;
	int sink_errno;
	/* the response */
	CURLcode cc;
	long os_errno;
	int attempts;
	long status, seen_status;
	struct buf err;		/* the body of an error answer, truncated */
	char *location, *www_auth, *ctype, *docker_digest, *range;
};

static void req_init(struct req *q, const char *method, const char *url)
{
	memset(q, 0, sizeof(*q));
	q->method = method;
	q->url = url;
	q->out_fd = -1;
	buf_init(&q->err, ERRBODY_MAX);
}

static void req_reset_headers(struct req *q)
{
	free(q->location);
	free(q->www_auth);
	free(q->ctype);
	free(q->docker_digest);
	free(q->range);
	q->location = q->www_auth = q->ctype = q->docker_digest = q->range = NULL;
}

static void req_release(struct req *q)
{
	req_reset_headers(q);
	buf_release(&q->err);
	if (q->dg_live)
		digest_release(&q->dg);
	q->dg_live = 0;
}

/* ---- curl callbacks ------------------------------------------------- */

static void set_header(char **slot, const char *v, size_t n)
{
	free(*slot);
	*slot = xstrndup(v, n);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct req *q = ud;
	size_t len = size * n, s, e = len, nlen;
	const char *colon;

	if (len > 5 && !strncmp(p, "HTTP/", 5)) {
		/* A new response (after a 100 Continue or a redirect). */
		long code = 0;
		size_t i = 5;
		req_reset_headers(q);
		while (i < len && p[i] != ' ')
			i++;
		while (i < len && p[i] == ' ')
			i++;
		for (; i < len && p[i] >= '0' && p[i] <= '9' && code < 1000; i++)
			code = code * 10 + (p[i] - '0');
		q->seen_status = code;
		return len;
	}
	colon = memchr(p, ':', len);
	if (!colon)
		return len;
	nlen = (size_t)(colon - p);
	s = nlen + 1;
	while (s < e && (p[s] == ' ' || p[s] == '\t'))
		s++;
	while (e > s && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' ' || p[e - 1] == '\t'))
		e--;
	if (e - s > HEADER_VALUE_MAX)
		return len;
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(p, name, nlen))
	if (IS("Location"))
		set_header(&q->location, p + s, e - s);
	else if (IS("WWW-Authenticate") && !q->www_auth)
		set_header(&q->www_auth, p + s, e - s);
	else if (IS("Content-Type"))
		set_header(&q->ctype, p + s, e - s);
	else if (IS("Docker-Content-Digest"))
		set_header(&q->docker_digest, p + s, e - s);
	else if (IS("Range"))
		set_header(&q->range, p + s, e - s);
#undef IS
	return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct req *q = ud;
	size_t len = size * n;

	if (q->seen_status < 200 || q->seen_status >= 300) {
		size_t room = q->err.max - q->err.len;
		buf_add(&q->err, p, len < room ? len : room);
		return len;
	}
	if (q->body)
		return buf_add(q->body, p, len) < 0 ? 0 : len;
	if (q->out_fd >= 0) {
		if (len > q->out_max - q->out_len) {
			q->out_toobig = 1;
			return 0;
		}
		q->out_len += len;
		for (size_t done = 0; done < len;) {
			ssize_t w = write(q->out_fd, p + done, len - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				q->sink_errno = w < 0 ? errno : EIO;
				return 0;
			}
			done += (size_t)w;
		}
		digest_update(&q->dg, p, len);
	}
	return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
	struct source *s = ud;
	uint64_t left = s->len - s->pos;
	size_t want = size * n;

	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (s->mem) {
		memcpy(p, s->mem + s->off + s->pos, want);
	} else {
		ssize_t r;
		do
			r = pread(s->fd, p, want, (off_t)(s->off + s->pos));
		while (r < 0 && errno == EINTR);
		if (r <= 0) {
			s->read_errno = r < 0 ? errno : EIO;	/* 0: the file shrank */
			return CURL_READFUNC_ABORT;
		}
		want = (size_t)r;
	}
	s->pos += want;
	return want;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
	struct source *s = ud;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > s->len)
		return CURL_SEEKFUNC_FAIL;
	s->pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct req *q = ud;
	if (interrupt_requested())
		return 1;
	if (q->src && q->src->fn && ulnow > 0)
		q->src->fn(q->src->fn_data, q->src->off + (uint64_t)ulnow, q->src->total);
	return 0;
}

/* ---- tokens --------------------------------------------------------- */

/* The token for scope, unless there is none or it is about to expire. */
static struct token *token_find(struct registry *r, const char *scope)
{
	for (size_t i = 0; i < r->ntokens; i++)
		if (!strcmp(r->tokens[i].scope, scope ? scope : ""))
			return now_monotonic() < r->tokens[i].use_until ? &r->tokens[i] : NULL;
	return NULL;
}

static void token_drop(struct registry *r, const char *scope)
{
	for (size_t i = 0; i < r->ntokens; i++) {
		struct token *t = &r->tokens[i];
		if (strcmp(t->scope, scope ? scope : ""))
			continue;
		free(t->scope);
		secret_free(t->value);
		*t = r->tokens[--r->ntokens];
		return;
	}
}

/* Keeps value (taken over) for scope until shortly before its lifetime ends. */
static void token_store(struct registry *r, const char *scope, char *value, double use_until)
{
	token_drop(r, scope);
	r->tokens = xrealloc(r->tokens, (r->ntokens + 1) * sizeof(*r->tokens));
	r->tokens[r->ntokens].scope = xstrdup(scope ? scope : "");
	r->tokens[r->ntokens].value = value;
	r->tokens[r->ntokens].use_until = use_until;
	r->ntokens++;
}

/* ---- one request ---------------------------------------------------- */

/* 1 when url goes to this registry (so it may carry our credentials). */
static int same_origin(const struct registry *r, const char *url)
{
	size_t n = strlen(r->base);
	return !strncmp(url, r->base, n) && (url[n] == '/' || url[n] == '?' || !url[n]);
}

static const char *url_path(const struct registry *r, const char *url)
{
	return same_origin(r, url) ? url + strlen(r->base) : url;
}

static void perform_once(struct registry *r, struct req *q)
{
	CURL *c = r->curl;
	struct curl_slist *h = NULL;
	char *authz = NULL, *ct = NULL, *cr = NULL;
	int https = !strncmp(r->base, "https:", 6), with_auth = 0;

	curl_easy_reset(c);	/* keeps the live connections */
	req_reset_headers(q);
	buf_reset(&q->err);
	q->status = q->seen_status = 0;
	q->sink_errno = 0;
	q->out_len = 0;
	q->out_toobig = 0;
	if (q->body)
		buf_reset(q->body);
	if (q->out_fd >= 0) {
		if (ftruncate(q->out_fd, 0) < 0 || lseek(q->out_fd, 0, SEEK_SET) < 0)
			q->sink_errno = errno;
		if (q->dg_live)
			digest_release(&q->dg);
		digest_init(&q->dg);
		q->dg_live = 1;
	}
	if (q->src) {
		q->src->pos = 0;
		q->src->read_errno = 0;
	}
	r->errbuf[0] = '\0';

	curl_easy_setopt(c, CURLOPT_URL, q->url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "pystrib/" PYSTRIB_VERSION);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L << 10);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, 512L << 10);
	/* A stalled transfer (no byte for a minute) fails and is retried. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	if (r->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, r->ca_file);
	if (r->insecure) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, q);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, q);
	if (q->follow) {
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
		curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, https ? "https" : "http,https");
	}

	if (!strcmp(q->method, "HEAD")) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(q->method, "POST")) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		if (q->src) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->src->len);
			curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(c, CURLOPT_READDATA, q->src);
		} else {
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
		}
	} else if (!strcmp(q->method, "PUT") || !strcmp(q->method, "PATCH")) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(q->src ? q->src->len : 0));
		if (q->src) {
			curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
			curl_easy_setopt(c, CURLOPT_READDATA, q->src);
		}
		if (!strcmp(q->method, "PATCH"))
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
	} else if (strcmp(q->method, "GET")) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
	}
	if (q->src) {
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, q->src);
	}

	if (q->accept_manifest)
		h = curl_slist_append(h, manifest_accept);
	if (q->content_type) {
		ct = xstrfmt("Content-Type: %s", q->content_type);
		h = curl_slist_append(h, ct);
	}
	if (q->content_range) {
		cr = xstrfmt("Content-Range: %s", q->content_range);
		h = curl_slist_append(h, cr);
	}
	if (q->token_request || (same_origin(r, q->url) && r->scheme == AUTH_BASIC)) {
		if (r->have_cred && r->cred.username && r->cred.password) {
			curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
			curl_easy_setopt(c, CURLOPT_USERNAME, r->cred.username);
			curl_easy_setopt(c, CURLOPT_PASSWORD, r->cred.password);
			with_auth = 1;
		}
	} else if (same_origin(r, q->url) && r->scheme == AUTH_BEARER) {
		struct token *t = token_find(r, q->scope);
		if (t) {
			authz = xstrfmt("Authorization: Bearer %s", t->value);
			h = curl_slist_append(h, authz);
			with_auth = 1;
		}
	}
	if (h)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);

	q->cc = curl_easy_perform(c);
	r->requests++;
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &q->status);
	q->os_errno = 0;
	curl_easy_getinfo(c, CURLINFO_OS_ERRNO, &q->os_errno);
	if (with_auth && r->have_cred && q->cc == CURLE_OK && q->status != 401 && q->status != 403)
		r->authenticated = 1;
	if (q->cc != CURLE_OK)
		log_debug("registry '%s': %s %s: %s", r->host, q->method, url_path(r, q->url),
			  r->errbuf[0] ? r->errbuf : curl_easy_strerror(q->cc));
	else
		log_debug("registry '%s': %s %s: %ld", r->host, q->method, url_path(r, q->url),
			  q->status);
	/* curl keeps the password and header copies until the next reset. */
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(h);
	secret_free(authz);
	free(ct);
	free(cr);
}

static int transient_cc(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static int transient(const struct req *q)
{
	if (q->cc != CURLE_OK)
		return transient_cc(q->cc) && !q->sink_errno && !q->out_toobig &&
		       !(q->body && q->body->toobig);
	return q->status >= 500 || q->status == 429;
}

/* Sleeps 0.3 s doubling per attempt (1, 2, ...); 0, or -1 when interrupted (error set). */
static int backoff(int attempt)
{
	double secs = BACKOFF_FIRST;
	for (int i = 1; i < attempt; i++)
		secs *= 2;
	return sleep_interruptible(secs);
}

static int interrupted_error(void)
{
	return error_set(PS_EXIT_INTERRUPTED, "interrupted");
}

/* Why a request got no answer, in a few lowercase words where they are known. */
static void transport_reason(const struct registry *r, const struct req *q, struct buf *out)
{
	const char *s = r->errbuf[0] ? r->errbuf : curl_easy_strerror(q->cc);

	if (q->cc == CURLE_COULDNT_RESOLVE_HOST)
		s = "cannot resolve the host name";
	else if (q->cc == CURLE_OPERATION_TIMEDOUT)
		s = "timed out";
	else if (q->cc == CURLE_GOT_NOTHING)
		s = "the connection closed without an answer";
	else if ((q->cc == CURLE_COULDNT_CONNECT || q->cc == CURLE_SEND_ERROR ||
		  q->cc == CURLE_RECV_ERROR) && q->os_errno)
		s = strerror((int)q->os_errno);
	/* "Connection refused" reads "connection refused"; "TLS ..." stays. */
	if (*s >= 'A' && *s <= 'Z' && (s[1] < 'A' || s[1] > 'Z')) {
		buf_addch(out, (char)(*s - 'A' + 'a'));
		s++;
	}
	buf_addstr(out, s);
	if (q->attempts > 1)
		buf_addf(out, " (tried %d times)", q->attempts);
}

/* Sets the error for a request that got no HTTP answer. Returns -1. */
static int transport_error(struct registry *r, const struct req *q, const char *what)
{
	struct buf reason = BUF_INIT;
	const char *why;

	transport_reason(r, q, &reason);
	why = reason.ptr;

	if (interrupt_requested()) {
		interrupted_error();
	} else if (q->body && q->body->toobig) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' sent more than %zu bytes for %s", r->host,
			  q->body->max, what);
		error_hint("check that this is the registry and image you meant");
	} else if (q->out_toobig) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' sent more than the %llu bytes its "
			  "manifest gives for %s", r->host, (unsigned long long)q->out_max, what);
		error_hint("check that this is the registry and image you meant");
	} else if (q->sink_errno) {
		error_set(PS_EXIT_IO, "cannot write %s to disk: %s", what,
			  strerror(q->sink_errno));
	} else if (q->src && q->src->read_errno) {
		error_set(PS_EXIT_IO, "cannot read %s from disk: %s", what,
			  strerror(q->src->read_errno));
	} else if (q->cc == CURLE_PEER_FAILED_VERIFICATION || q->cc == CURLE_SSL_CACERT_BADFILE ||
		   q->cc == CURLE_SSL_CERTPROBLEM || q->cc == CURLE_SSL_ISSUER_ERROR) {
		error_set(PS_EXIT_REGISTRY, "cannot reach registry '%s': its TLS certificate is not "
			  "trusted: %s", r->host, why);
		error_hint("set [registry] ca_file to the CA certificate that signed it");
	} else {
		error_set(PS_EXIT_REGISTRY, "cannot reach registry '%s': %s", r->host, why);
		error_hint("start the registry, or correct [registry] url (and ca_file "
			   "for a private CA)");
	}
	buf_release(&reason);
	return -1;
}

static int fetch_token(struct registry *r, const char *scope);

/*
 * The answer to a 401: 0 to send the request again (credentials or a
 * token are now in place), 1 when there is nothing more to try, -1 with
 * the error set (the token service failed).
 */
static int authenticate(struct registry *r, struct req *q)
{
	struct auth_challenge ch;
	int ret = 1;

	if (!q->www_auth || auth_challenge_parse(&ch, q->www_auth) < 0)
		return 1;
	if (!strcmp(ch.scheme, "basic")) {
		if (r->scheme != AUTH_BASIC && r->have_cred && r->cred.password) {
			r->scheme = AUTH_BASIC;
			ret = 0;
		}
	} else if (!strcmp(ch.scheme, "bearer") && ch.realm) {
		const char *scope = q->scope ? q->scope : ch.scope;
		free(r->realm);
		free(r->service);
		r->realm = xstrdup(ch.realm);
		r->service = ch.service ? xstrdup(ch.service) : NULL;
		r->scheme = AUTH_BEARER;
		token_drop(r, q->scope);
		ret = fetch_token(r, scope);
		if (ret == 0 && scope != q->scope) {
			/* Filed under the request's scope, where the next request looks. */
			struct token *t = token_find(r, scope);
			token_store(r, q->scope, xstrdup(t->value), t->use_until);
		}
	}
	auth_challenge_release(&ch);
	return ret;
}

/*
 * Sends q: a 401 is answered once (Basic credentials, or a Bearer token
 * fetched for q->scope); connection errors and 5xx are retried with
 * backoff unless q->no_retry. 0 when an HTTP answer came (any status, in
 * q->status), -1 with the error set when none did.
 */
static int request(struct registry *r, struct req *q, const char *what)
{
	int authed = 0;

	if (!q->token_request && r->scheme == AUTH_BEARER && same_origin(r, q->url) &&
	    !token_find(r, q->scope) && r->realm) {
		/* A token for a new scope before the registry asks; a 401 to it still gets one more. */
		if (fetch_token(r, q->scope) < 0)
			return -1;
	}
	for (int attempt = 1;; attempt++) {
		perform_once(r, q);
		q->attempts = attempt;
		if (interrupt_requested())
			return interrupted_error();
		if (q->cc == CURLE_OK && q->status == 401 && !authed && !q->token_request &&
		    same_origin(r, q->url)) {
			authed = 1;
			int a = authenticate(r, q);
			if (a < 0)
				return -1;
			if (a == 0) {
				attempt--;
				continue;
			}
		}
		if (q->no_retry || attempt >= ATTEMPTS || !transient(q))
			break;
		log_info("registry '%s': %s %s failed (%s), trying again", r->host, q->method,
			 url_path(r, q->url), q->cc != CURLE_OK ? curl_easy_strerror(q->cc) : "5xx");
		if (backoff(attempt) < 0)
			return -1;
	}
	if (q->cc != CURLE_OK)
		return transport_error(r, q, what);
	return 0;
}

/* Keeps only printable ASCII of untrusted text, at most max bytes. */
static void add_clean(struct buf *out, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++)
		buf_addch(out, s[i] >= ' ' && s[i] < 0x7f ? s[i] : '?');
}

/* ": CODE: message" of the registry's {"errors":[...]} answer, or "". */
static void registry_error_text(const struct req *q, struct buf *out)
{
	json_t *j = json_loadb(q->err.ptr, q->err.len, 0, NULL);
	json_t *e = json_array_get(json_object_get(j, "errors"), 0);
	const char *code = json_string_value(json_object_get(e, "code"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (code) {
		buf_addstr(out, ": ");
		add_clean(out, code, 64);
		if (msg && *msg) {
			buf_addstr(out, " (");
			add_clean(out, msg, 200);
			buf_addstr(out, ")");
		}
	}
	json_decref(j);
}

/* Sets the error for an unexpected HTTP answer to `what`. Returns -1. */
static int status_error(struct registry *r, const struct req *q, const char *what)
{
	struct buf detail = BUF_INIT;

	registry_error_text(q, &detail);
	if (q->status == 401 && r->have_cred) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' refused the credentials from %s%s%s%s",
			  r->host, r->cred.origin ? r->cred.origin : "the config",
			  r->cred.username ? " (user '" : "",
			  r->cred.username ? r->cred.username : "", r->cred.username ? "')" : "");
		error_hint("check [registry] username and the password it names (password_env, "
			   "password_file), or run 'docker login %s'", r->host);
	} else if (q->status == 401) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' requires credentials for %s", r->host, what);
		error_hint("set [registry] username and password_env (or password_file), or run "
			   "'docker login %s'", r->host);
	} else if (q->status == 403) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' denied access to %s%s", r->host, what,
			  detail.ptr);
		error_hint("check that these credentials may push and pull there");
	} else if (q->status >= 500 || q->status == 429) {
		char tried[32] = "";
		if (q->attempts > 1)
			snprintf(tried, sizeof(tried), " (tried %d times)", q->attempts);
		error_set(PS_EXIT_REGISTRY, "registry '%s' failed with HTTP %ld for %s%s%s", r->host,
			  q->status, what, detail.ptr, tried);
		error_hint("look at the registry's log, and try again later");
	} else {
		error_set(PS_EXIT_REGISTRY, "registry '%s' answered HTTP %ld to %s%s", r->host,
			  q->status, what, detail.ptr);
		error_hint("check that [registry] url points at a container registry "
			   "(OCI distribution API)");
	}
	buf_release(&detail);
	return -1;
}

static void url_escape_into(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~')
			buf_addch(out, (char)ch);
		else
			buf_addf(out, "%%%c%c", hex[ch >> 4], hex[ch & 15]);
	}
}

/* Adds "&scope=A&scope=B" for a space-separated list. */
static void add_scopes(struct buf *out, const char *scope)
{
	for (const char *p = scope; p && *p;) {
		size_t n = strcspn(p, " ");
		if (n) {
			buf_addstr(out, "&scope=");
			url_escape_into(out, p, n);
		}
		p += n;
		while (*p == ' ')
			p++;
	}
}

/* Gets a token for scope from the realm of the last Bearer challenge. 0 or -1. */
static int fetch_token(struct registry *r, const char *scope)
{
	struct buf url = BUF_INIT, body, form = BUF_INIT;
	struct source src = { .fd = -1 };
	struct req q;
	char *token = NULL;
	long life;
	int ret = -1;

	buf_init(&body, TOKEN_MAX);
	if (strncmp(r->realm, "https://", 8) && strncmp(r->realm, "http://", 7)) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' names a token service that is not an "
			  "http(s) URL", r->host);
		goto out;
	}
	if (!strncmp(r->realm, "http://", 7) && r->have_cred && !r->insecure &&
	    !host_is_loopback(r->realm)) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' wants the credentials sent in clear text "
			  "to its token service", r->host);
		error_hint("use a registry whose token service is https, or set [registry] "
			   "insecure = true if you accept that");
		goto out;
	}
	buf_addstr(&url, r->realm);
	req_init(&q, "GET", NULL);
	q.token_request = 1;
	q.body = &body;
	if (r->have_cred && r->cred.identity_token) {
		/* docker login's refresh token: the OAuth2 form, posted. */
		buf_addstr(&form, "grant_type=refresh_token&client_id=pystrib&refresh_token=");
		url_escape_into(&form, r->cred.identity_token, strlen(r->cred.identity_token));
		if (r->service) {
			buf_addstr(&form, "&service=");
			url_escape_into(&form, r->service, strlen(r->service));
		}
		add_scopes(&form, scope);
		src.mem = (const unsigned char *)form.ptr;
		src.len = form.len;
		q.method = "POST";
		q.src = &src;
		q.content_type = "application/x-www-form-urlencoded";
	} else {
		buf_addstr(&url, strchr(r->realm, '?') ? "&" : "?");
		buf_addstr(&url, "client_id=pystrib");
		if (r->service) {
			buf_addstr(&url, "&service=");
			url_escape_into(&url, r->service, strlen(r->service));
		}
		add_scopes(&url, scope);
	}
	q.url = url.ptr;
	if (request(r, &q, "a token") < 0)
		goto out_req;
	if (q.status == 401 || q.status == 403) {
		if (r->have_cred) {
			status_error(r, &q, "a token");
		} else {
			error_set(PS_EXIT_REGISTRY, "registry '%s' gives no anonymous access%s%s",
				  r->host, scope ? " to " : "", scope ? scope : "");
			error_hint("set [registry] username and password_env (or password_file), "
				   "or run 'docker login %s'", r->host);
		}
		goto out_req;
	}
	if (q.status != 200) {
		status_error(r, &q, "a token from its token service");
		goto out_req;
	}
	if (auth_token_parse(body.ptr, body.len, &token, &life) < 0) {
		error_set(PS_EXIT_REGISTRY, "the token service of registry '%s' sent no token",
			  r->host);
		goto out_req;
	}
	/* Renewed a little early, so that no request goes out with a token that expires on the way. */
	token_store(r, scope, token, now_monotonic() + (double)life - (life < 40 ? life / 4.0 : 10));
	ret = 0;
out_req:
	req_release(&q);
out:
	if (body.len)
		memset(body.ptr, 0, body.len);
	buf_release(&body);
	if (form.len)
		memset(form.ptr, 0, form.len);
	buf_release(&form);
	buf_release(&url);
	return ret;
}

/* ---- opening -------------------------------------------------------- */

/* "host[:port]" of a URL, lowercased. Caller frees. */
static char *url_hostport(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	char *h = xstrndup(p, strcspn(p, "/?#"));
	for (char *s = h; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	return h;
}

static uint64_t chunk_size(void)
{
	const char *v = getenv("PYSTRIB_REGISTRY_CHUNK");
	long n;
	if (v && *v && parse_long(v, 1, (long)1 << 40, &n) == 0)
		return (uint64_t)n;
	return CHUNK_DEFAULT;
}

/* Sets scheme, base and TLS settings of r for the configured registry. */
static int open_configured(struct registry *r, const struct registry_config *rc)
{
	const char *url = rc->url;
	size_t n = strlen(url);
	int http = !strncasecmp(url, "http://", 7);

	if (!http && strncasecmp(url, "https://", 8)) {
		error_set(PS_EXIT_USAGE, "[registry] url '%s' is neither http:// nor https://", url);
		return error_hint("write it as https://HOST[:PORT] (or http:// for a loopback registry)");
	}
	if (http && !rc->insecure && !host_is_loopback(url)) {
		error_set(PS_EXIT_USAGE, "refusing plain http to registry '%s', which is not a "
			  "loopback address", r->host);
		return error_hint("use https:// in [registry] url, or set [registry] insecure = true "
				  "if you accept that images and credentials can be read on the way");
	}
	while (n && url[n - 1] == '/')
		n--;
	r->base = xstrndup(url, n);
	r->insecure = rc->insecure;
	if (rc->ca_file)
		r->ca_file = expand_home(rc->ca_file);
	return 0;
}

int registry_open(struct registry **out, const struct config *cfg, const char *host)
{
	struct registry *r;
	const struct registry_config *rc = cfg ? &cfg->registry : NULL;
	char *conf_host = rc && rc->url ? url_hostport(rc->url) : NULL;
	int configured, c;

	if (!ref_registry_valid(host)) {
		free(conf_host);
		error_set(PS_EXIT_USAGE, "invalid registry host '%s'", host);
		return error_hint("write it as HOST or HOST:PORT");
	}
	configured = conf_host && !strcasecmp(conf_host, host);
	free(conf_host);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return error_set(PS_EXIT_REGISTRY, "cannot initialise libcurl");
	r = xcalloc(1, sizeof(*r));
	r->host = xstrdup(host);
	r->chunk = chunk_size();
	if (configured) {
		if (open_configured(r, rc) < 0)
			goto fail;
	} else {
		r->base = xstrfmt("%s://%s", host_is_loopback(host) ? "http" : "https",
				  ref_api_host(host));
	}
	c = auth_find_credentials(configured ? rc : NULL, host, &r->cred);
	if (c < 0)
		goto fail;
	r->have_cred = c == 0;
	r->curl = curl_easy_init();
	if (!r->curl) {
		error_set(PS_EXIT_REGISTRY, "cannot initialise libcurl");
		goto fail;
	}
	log_debug("registry '%s': %s, %s", host, r->base,
		  r->have_cred ? "with credentials" : "anonymous");
	*out = r;
	return 0;
fail:
	registry_free(r);
	return -1;
}

void registry_free(struct registry *r)
{
	if (!r)
		return;
	if (r->curl)
		curl_easy_cleanup(r->curl);
	for (size_t i = 0; i < r->ntokens; i++) {
		free(r->tokens[i].scope);
		secret_free(r->tokens[i].value);
	}
	free(r->tokens);
	credentials_release(&r->cred);
	free(r->host);
	free(r->base);
	free(r->ca_file);
	free(r->realm);
	free(r->service);
	free(r);
	curl_global_cleanup();
}

const char *registry_host(const struct registry *r)
{
	return r->host;
}

int registry_has_credentials(const struct registry *r, const char **origin)
{
	if (origin)
		*origin = r->have_cred ? r->cred.origin : NULL;
	return r->have_cred;
}

unsigned registry_requests(const struct registry *r)
{
	return r->requests;
}

int registry_authenticated(const struct registry *r)
{
	return r->authenticated;
}

/* ---- the API -------------------------------------------------------- */

int registry_ping(struct registry *r)
{
	char *url = xstrfmt("%s/v2/", r->base);
	struct req q;
	int ret = -1;

	req_init(&q, "GET", url);
	if (request(r, &q, "/v2/") < 0)
		goto out;
	if (q.status == 200)
		ret = 0;
	else if (q.status == 404) {
		error_set(PS_EXIT_REGISTRY, "'%s' is not a container registry (HTTP 404 for /v2/)",
			  r->host);
		error_hint("check that [registry] url points at a container registry "
			   "(OCI distribution API)");
	} else
		status_error(r, &q, "/v2/");
out:
	req_release(&q);
	free(url);
	return ret;
}

static int check_repo(const char *repo)
{
	if (ref_repository_valid(repo))
		return 0;
	error_set(PS_EXIT_USAGE, "invalid repository name '%s'", repo);
	return error_hint("use lowercase letters and digits, separated by '/', '.', '_' or '-'");
}

static int check_digest(const char *digest)
{
	if (digest_valid(digest))
		return 0;
	return error_set(PS_EXIT_USAGE, "invalid digest '%s': not sha256: and 64 lowercase hex "
			 "digits", digest);
}

static char *pull_scope(const char *repo)
{
	return xstrfmt("repository:%s:pull", repo);
}

static char *push_scope(const char *repo)
{
	return xstrfmt("repository:%s:pull,push", repo);
}

/* The media type of a manifest: the Content-Type, else its "mediaType". */
static char *manifest_media_type(const struct req *q, const struct buf *body)
{
	if (q->ctype) {
		size_t n = strcspn(q->ctype, "; \t");
		if (n && strncmp(q->ctype, "application/json", n) && strncmp(q->ctype, "text/plain", n))
			return xstrndup(q->ctype, n);
	}
	json_t *j = json_loadb(body->ptr, body->len, 0, NULL);
	const char *mt = json_string_value(json_object_get(j, "mediaType"));
	char *ret = mt && *mt ? xstrdup(mt) : NULL;
	json_decref(j);
	return ret;
}

int registry_get_manifest(struct registry *r, const char *repo, const char *ref,
			  struct buf *body, char **media_type, char digest[DIGEST_LEN])
{
	int by_digest = !strncmp(ref, "sha256:", 7);
	char *url = NULL, *scope = NULL, *what = NULL, *mt = NULL;
	char got[DIGEST_LEN];
	struct buf tmp;
	struct req q;
	int ret = -1;

	if (check_repo(repo) < 0)
		return -1;
	if (by_digest ? check_digest(ref) < 0 : !ref_tag_valid(ref))
		return by_digest ? -1 : error_set(PS_EXIT_USAGE, "invalid tag '%s'", ref);
	buf_init(&tmp, MANIFEST_MAX);
	url = xstrfmt("%s/v2/%s/manifests/%s", r->base, repo, ref);
	scope = pull_scope(repo);
	what = xstrfmt("'%s/%s%s%s'", r->host, repo, by_digest ? "@" : ":", ref);
	req_init(&q, "GET", url);
	q.scope = scope;
	q.accept_manifest = 1;
	q.follow = 1;
	q.body = &tmp;
	if (request(r, &q, what) < 0)
		goto out;
	if (q.status == 404) {
		error_set(PS_EXIT_REGISTRY, "image %s is not in its registry", what);
		error_hint("check the reference, or push the image there first");
		goto out;
	}
	if (q.status != 200) {
		status_error(r, &q, what);
		goto out;
	}
	digest_bytes(tmp.ptr, tmp.len, got);
	if ((by_digest && strcmp(got, ref)) ||
	    (!by_digest && q.docker_digest && digest_valid(q.docker_digest) &&
	     strcmp(got, q.docker_digest))) {
		error_set(PS_EXIT_REGISTRY, "the manifest of %s does not match its digest (got %s)",
			  what, got);
		error_hint("the registry or something on the way altered it; try again");
		goto out;
	}
	mt = manifest_media_type(&q, &tmp);
	if (!mt) {
		error_set(PS_EXIT_REGISTRY, "the manifest of %s has no media type", what);
		goto out;
	}
	buf_reset(body);
	if (buf_add(body, tmp.ptr, tmp.len) < 0) {
		error_set(PS_EXIT_REGISTRY, "the manifest of %s is too large (%zu bytes)", what,
			  tmp.len);
		goto out;
	}
	*media_type = mt;
	mt = NULL;
	memcpy(digest, got, DIGEST_LEN);
	ret = 0;
out:
	req_release(&q);
	buf_release(&tmp);
	free(mt);
	free(url);
	free(scope);
	free(what);
	return ret;
}

/* HEAD /v2/REPO/KIND/DIGEST: 1 present, 0 absent, -1 error. */
static int head_exists(struct registry *r, const char *repo, const char *kind,
		       const char *digest)
{
	char *url, *scope, *what;
	struct req q;
	int ret = -1;

	if (check_repo(repo) < 0 || check_digest(digest) < 0)
		return -1;
	url = xstrfmt("%s/v2/%s/%s/%s", r->base, repo, kind, digest);
	scope = pull_scope(repo);
	what = xstrfmt("%s '%s' in '%s'", !strcmp(kind, "blobs") ? "blob" : "manifest", digest,
		       repo);
	req_init(&q, "HEAD", url);
	q.scope = scope;
	q.follow = 1;
	q.accept_manifest = !strcmp(kind, "manifests");
	if (request(r, &q, what) < 0)
		goto out;
	if (q.status == 200)
		ret = 1;
	else if (q.status == 404)
		ret = 0;
	else
		status_error(r, &q, what);
out:
	req_release(&q);
	free(url);
	free(scope);
	free(what);
	return ret;
}

int registry_blob_exists(struct registry *r, const char *repo, const char *digest)
{
	return head_exists(r, repo, "blobs", digest);
}

int registry_manifest_exists(struct registry *r, const char *repo, const char *digest)
{
	return head_exists(r, repo, "manifests", digest);
}

/* GET a blob into q's sink (set by the caller); 0 with the computed digest, or -1. */
static int get_blob(struct registry *r, struct req *q, const char *repo, const char *digest,
		    char got[DIGEST_LEN])
{
	char *url, *scope, *what;
	int ret = -1;

	url = xstrfmt("%s/v2/%s/blobs/%s", r->base, repo, digest);
	scope = pull_scope(repo);
	what = xstrfmt("blob '%s' of '%s'", digest, repo);
	q->method = "GET";
	q->url = url;
	q->scope = scope;
	q->follow = 1;
	if (request(r, q, what) < 0)
		goto out;
	if (q->status == 404) {
		error_set(PS_EXIT_REGISTRY, "registry '%s' has no %s", r->host, what);
		goto out;
	}
	if (q->status != 200) {
		status_error(r, q, what);
		goto out;
	}
	if (q->body) {
		digest_bytes(q->body->ptr, q->body->len, got);
	} else {
		digest_final(&q->dg, got);
		q->dg_live = 0;
	}
	if (strcmp(got, digest)) {
		error_set(PS_EXIT_REGISTRY, "%s from registry '%s' does not match its digest (got %s)",
			  what, r->host, got);
		error_hint("the registry's storage or something on the way altered it");
		goto out;
	}
	ret = 0;
out:
	free(url);
	free(scope);
	free(what);
	return ret;
}

int registry_get_blob(struct registry *r, const char *repo, const char *digest, struct buf *out)
{
	struct buf tmp;
	struct req q;
	char got[DIGEST_LEN];
	int ret = -1;

	if (check_repo(repo) < 0 || check_digest(digest) < 0)
		return -1;
	buf_init(&tmp, out->max ? out->max : BLOB_MAX_DEFAULT);
	req_init(&q, "GET", NULL);
	q.body = &tmp;
	if (get_blob(r, &q, repo, digest, got) == 0) {
		buf_reset(out);
		if (buf_add(out, tmp.ptr, tmp.len) == 0)
			ret = 0;
		else
			error_set(PS_EXIT_REGISTRY, "blob '%s' is too large", digest);
	}
	req_release(&q);
	buf_release(&tmp);
	return ret;
}

int registry_get_blob_file(struct registry *r, const char *repo, const char *digest,
			   uint64_t size, const char *path)
{
	struct req q;
	char got[DIGEST_LEN];
	int ret = -1, fd;

	if (check_repo(repo) < 0 || check_digest(digest) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return error_set(PS_EXIT_IO, "cannot create '%s': %s", path, strerror(errno));
	req_init(&q, "GET", NULL);
	q.out_fd = fd;
	q.out_max = size;
	ret = get_blob(r, &q, repo, digest, got);
	req_release(&q);
	if (close(fd) < 0 && ret == 0)
		ret = error_set(PS_EXIT_IO, "cannot write '%s': %s", path, strerror(errno));
	if (ret < 0)
		unlink(path);
	return ret;
}

/* The absolute URL of an upload Location (absolute or a path). NULL if neither. */
static char *upload_url(const struct registry *r, const char *loc)
{
	if (!loc || !*loc)
		return NULL;
	if (!strncmp(loc, "https://", 8) || !strncmp(loc, "http://", 7))
		return xstrdup(loc);
	if (loc[0] == '/')
		return xstrfmt("%s%s", r->base, loc);
	return NULL;
}

static int bad_location(struct registry *r, const char *repo)
{
	error_set(PS_EXIT_REGISTRY, "registry '%s' started an upload to '%s' without a usable "
		  "Location", r->host, repo);
	return error_hint("check that [registry] url points at a container registry "
			  "(OCI distribution API)");
}

/* Best effort: cancel an upload session. */
static void upload_cancel(struct registry *r, const char *scope, const char *loc)
{
	struct req q;
	req_init(&q, "DELETE", loc);
	q.scope = scope;
	q.no_retry = 1;
	perform_once(r, &q);
	req_release(&q);
}

/* POST .../blobs/uploads/: 0 with *loc (caller frees), or -1. */
static int upload_start(struct registry *r, const char *repo, const char *scope, char **loc)
{
	char *url = xstrfmt("%s/v2/%s/blobs/uploads/", r->base, repo);
	char *what = xstrfmt("a new upload to '%s'", repo);
	struct req q;
	int ret = -1;

	req_init(&q, "POST", url);
	q.scope = scope;
	if (request(r, &q, what) < 0)
		goto out;
	if (q.status != 202) {
		status_error(r, &q, what);
		goto out;
	}
	*loc = upload_url(r, q.location);
	ret = *loc ? 0 : bad_location(r, repo);
out:
	req_release(&q);
	free(url);
	free(what);
	return ret;
}

/*
 * Where an interrupted upload stands: 0 with *offset (bytes the registry
 * holds) and *loc updated, 1 when the registry forgot it, -1 on error.
 */
static int upload_status(struct registry *r, const char *scope, char **loc, uint64_t *offset)
{
	struct req q;
	int ret = -1;

	req_init(&q, "GET", *loc);
	q.scope = scope;
	if (request(r, &q, "the state of an upload") < 0)
		goto out;
	if (q.status == 404) {
		ret = 1;
		goto out;
	}
	if (q.status != 204 && q.status != 202)
		goto out;
	*offset = 0;
	if (q.range) {
		/* "0-N": N+1 bytes. distribution says "0-0" for 0 and for 1. */
		const char *dash = strchr(q.range, '-');
		long long end;
		if (dash && (end = strtoll(dash + 1, NULL, 10)) > 0)
			*offset = (uint64_t)end + 1;
	}
	char *nl = upload_url(r, q.location);
	if (nl) {
		free(*loc);
		*loc = nl;
	}
	ret = 0;
out:
	if (ret < 0)
		error_clear();
	req_release(&q);
	return ret;
}

static char *with_digest(const char *loc, const char *digest)
{
	return xstrfmt("%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
}

/*
 * Uploads src (its whole len, as `size`) as digest: one PUT after the
 * POST, or PATCH requests of r->chunk bytes when chunked is allowed and
 * size passes it. After a dropped connection or a 5xx, asks the registry
 * how much it holds and goes on from there, or starts over.
 */
static int upload(struct registry *r, const char *repo, struct source *src, const char *digest,
		  uint64_t size, int chunked)
{
	char *scope = push_scope(repo), *loc = NULL, *what = NULL;
	int mono = !chunked || size <= r->chunk, fails = 0, ret = -1;
	uint64_t off = 0, high = 0;	/* high: the furthest the registry has acknowledged */

	what = xstrfmt("the upload of '%s' to '%s'", digest, repo);
	if (upload_start(r, repo, scope, &loc) < 0)
		goto out;
	for (;;) {
		uint64_t n = size - off;
		int last = mono || n <= r->chunk;
		char range[64], *put = NULL;
		struct req q;
		int rc, done = 0, restart = 0;

		if (!last)
			n = r->chunk;
		src->off = off;
		src->len = n;
		if (last) {
			put = with_digest(loc, digest);
			req_init(&q, "PUT", put);
		} else {
			req_init(&q, "PATCH", loc);
			snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
				 (unsigned long long)(off + n - 1));
			q.content_range = range;
		}
		q.scope = scope;
		q.no_retry = 1;
		q.src = n ? src : NULL;
		q.content_type = "application/octet-stream";
		rc = request(r, &q, what);
		if (rc == 0 && last && (q.status == 201 || q.status == 200 || q.status == 204)) {
			if (q.docker_digest && strcmp(q.docker_digest, digest))
				error_set(PS_EXIT_REGISTRY, "registry '%s' stored '%s' as '%s'",
					  r->host, digest, q.docker_digest);
			else
				ret = 0;
			done = 1;
		} else if (rc == 0 && !last && (q.status == 202 || q.status == 204)) {
			char *nl = upload_url(r, q.location);
			off += n;
			if (nl) {
				free(loc);
				loc = nl;
			}
			/* Only new ground resets the count, so a fault that recurs after every restart ends. */
			if (off > high) {
				high = off;
				fails = 0;
			}
		} else if (rc < 0 && (error_kind() == PS_EXIT_INTERRUPTED || !transient(&q))) {
			done = 1;
		} else if (rc == 0 && q.status != 416 && !transient(&q)) {
			status_error(r, &q, what);
			done = 1;
		} else if (++fails >= ATTEMPTS) {
			if (rc == 0)
				status_error(r, &q, what);
			error_wrap("after %d attempts", ATTEMPTS);
			done = 1;
		} else {
			log_info("registry '%s': %s of %s failed at byte %llu (%s), resuming",
				 r->host, q.method, digest, (unsigned long long)off,
				 rc < 0 ? error_message() : "HTTP error");
			error_clear();
			restart = q.status == 416;
		}
		req_release(&q);
		free(put);
		if (done)
			break;
		if (fails) {
			uint64_t at = 0;
			if (backoff(fails) < 0)
				break;
			if (!restart && upload_status(r, scope, &loc, &at) == 0 && at <= size) {
				off = at;
			} else {
				upload_cancel(r, scope, loc);
				free(loc);
				loc = NULL;
				off = 0;
				if (upload_start(r, repo, scope, &loc) < 0)
					break;
			}
			log_info("registry '%s': %s %s at byte %llu", r->host,
				 off ? "resuming" : "restarting", digest, (unsigned long long)off);
		}
	}
out:
	free(scope);
	free(loc);
	free(what);
	return ret;
}

int registry_upload_file(struct registry *r, const char *repo, const char *path,
			 const char *digest, uint64_t size, registry_progress_fn *fn, void *data)
{
	struct source src = { .fd = -1, .total = size, .fn = fn, .fn_data = data };
	struct stat st;
	int ret;

	if (check_repo(repo) < 0 || check_digest(digest) < 0)
		return -1;
	src.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (src.fd < 0)
		return error_set(PS_EXIT_IO, "cannot open '%s': %s", path, strerror(errno));
	if (fstat(src.fd, &st) < 0 || (uint64_t)st.st_size != size) {
		close(src.fd);
		return error_set(PS_EXIT_IO, "'%s' is not %llu bytes long (changed while "
				 "pushing?)", path, (unsigned long long)size);
	}
	ret = upload(r, repo, &src, digest, size, 1);
	close(src.fd);
	if (ret == 0 && fn)
		fn(data, size, size);
	return ret;
}

int registry_upload_bytes(struct registry *r, const char *repo, const void *data, size_t len,
			  const char *digest)
{
	struct source src = { .fd = -1, .mem = data, .total = len };

	if (check_repo(repo) < 0 || check_digest(digest) < 0)
		return -1;
	return upload(r, repo, &src, digest, len, 0);
}

int registry_mount_blob(struct registry *r, const char *repo, const char *digest,
			const char *from)
{
	char *url = NULL, *scope = NULL, *what = NULL, *loc = NULL;
	struct req q;
	int ret = -1;

	if (check_repo(repo) < 0 || check_repo(from) < 0 || check_digest(digest) < 0)
		return -1;
	url = xstrfmt("%s/v2/%s/blobs/uploads/?mount=%s&from=%s", r->base, repo, digest, from);
	scope = xstrfmt("repository:%s:pull,push repository:%s:pull", repo, from);
	what = xstrfmt("mounting '%s' from '%s' into '%s'", digest, from, repo);
	req_init(&q, "POST", url);
	q.scope = scope;
	if (request(r, &q, what) < 0)
		goto out;
	if (q.status == 201) {
		ret = 1;
	} else if (q.status == 202) {
		/* Declined: an upload session was opened instead; close it. */
		loc = upload_url(r, q.location);
		if (loc)
			upload_cancel(r, scope, loc);
		ret = 0;
	} else {
		status_error(r, &q, what);
	}
out:
	req_release(&q);
	free(url);
	free(scope);
	free(what);
	free(loc);
	return ret;
}

int registry_put_manifest(struct registry *r, const char *repo, const char *ref,
			  const char *media_type, const void *data, size_t len)
{
	struct source src = { .fd = -1, .mem = data, .len = len, .total = len };
	char *url = NULL, *scope = NULL, *what = NULL;
	int by_digest = !strncmp(ref, "sha256:", 7);
	struct req q;
	int ret = -1;

	if (check_repo(repo) < 0)
		return -1;
	if (by_digest ? check_digest(ref) < 0 : !ref_tag_valid(ref))
		return by_digest ? -1 : error_set(PS_EXIT_USAGE, "invalid tag '%s'", ref);
	url = xstrfmt("%s/v2/%s/manifests/%s", r->base, repo, ref);
	scope = push_scope(repo);
	what = xstrfmt("the manifest '%s%s%s'", repo, by_digest ? "@" : ":", ref);
	for (int attempt = 1;; attempt++) {
		req_init(&q, "PUT", url);
		q.scope = scope;
		q.src = &src;
		q.content_type = media_type;
		if (request(r, &q, what) < 0)
			goto out;
		if (q.status == 201 || q.status == 200) {
			ret = 0;
			goto out;
		}
		/*
		 * Two pushes of the same image at once: distribution writes the
		 * same manifest blob from both, and one may read the other's
		 * half-written file back (DIGEST_INVALID). Once that write is
		 * done, the same PUT goes through.
		 */
		if (q.status != 400 || attempt == 3 || !q.err.ptr ||
		    !strstr(q.err.ptr, "DIGEST_INVALID"))
			break;
		log_debug("%s: DIGEST_INVALID, putting it again", what);
		req_release(&q);
		if (backoff(attempt) < 0)
			goto out_released;
	}
	status_error(r, &q, what);
out:
	req_release(&q);
out_released:
	free(url);
	free(scope);
	free(what);
	return ret;
}
