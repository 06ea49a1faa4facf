#include "ssh.h"

#include <errno.h>
#include <fcntl.h>
#include <libssh/callbacks.h>
#include <libssh/libssh.h>
#include <libssh/server.h>	/* ssh_send_keepalive, client-side too */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "shquote.h"
#include "util.h"

struct ssh_conn {
	struct ssh_target t;
	ssh_session s;
	char *name;		/* user@host:port */
	char *fingerprint;	/* SHA256:... */
	char *known_hosts;	/* the file checked */
	struct buf skipped;	/* encrypted keys the agent could not use */
	double next_keepalive;
	struct ssh_callbacks_struct cb;
};

/* ---- targets ------------------------------------------------------- */

/*
 * Host and user names reach ProxyCommand lines of ~/.ssh/config, which
 * libssh expands unquoted (%h, %r): allow only what names are made of.
 */
static int valid_name(const char *s, int host)
{
	if (!*s || *s == '-')
		return 0;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_')
			continue;
		if (host && ch == ':')
			continue;
		return 0;
	}
	return 1;
}

static int check_names(const struct ssh_target *t)
{
	if (!t->host || !*t->host)
		return error_set(PS_EXIT_USAGE, "no remote host is configured"),
		       error_hint("set [remote] host in the config, or pass --host [USER@]HOST[:PORT]");
	if (!valid_name(t->host, 1))
		return error_set(PS_EXIT_USAGE, "invalid remote host name '%s'", t->host);
	if (t->user && !valid_name(t->user, 0))
		return error_set(PS_EXIT_USAGE, "invalid remote user name '%s'", t->user);
	return 0;
}

static void set_str(char **dst, const char *src, int home)
{
	free(*dst);
	*dst = !src ? NULL : home ? expand_home(src) : xstrdup(src);
}

int ssh_target_from_config(struct ssh_target *t, const struct config *cfg)
{
	const struct remote_config *r = &cfg->remote;
	const char *origin = config_origin(cfg, "remote.port");

	set_str(&t->host, r->host, 0);
	set_str(&t->user, r->user, 0);
	set_str(&t->identity, r->identity, 1);
	set_str(&t->known_hosts, r->known_hosts, 1);
	set_str(&t->label, r->name, 0);
	/* A port nobody set leaves the choice to ~/.ssh/config. */
	t->port = origin && strcmp(origin, "default") ? r->port : 0;
	return check_names(t);
}

int ssh_target_parse(struct ssh_target *t, const char *dest)
{
	char *copy = xstrdup(dest), *host = copy, *at, *port = NULL;
	long n;
	int ret = -1;

	at = strrchr(copy, '@');
	if (at) {
		*at = '\0';
		set_str(&t->user, copy, 0);
		host = at + 1;
	}
	if (*host == '[') {		/* [v6]:port */
		char *end = strchr(host, ']');
		if (!end || (end[1] && end[1] != ':'))
			goto bad;
		*end = '\0';
		host++;
		if (end[1] == ':')
			port = end + 2;
	} else {
		char *colon = strchr(host, ':');
		if (colon && !strchr(colon + 1, ':')) {	/* one colon: host:port */
			*colon = '\0';
			port = colon + 1;
		}
	}
	if (port) {
		if (parse_long(port, 1, 65535, &n) < 0)
			goto bad;
		t->port = (int)n;
	}
	set_str(&t->host, host, 0);
	ret = check_names(t);
	goto out;
bad:
	error_set(PS_EXIT_USAGE, "invalid remote '%s'", dest);
	error_hint("write it as [USER@]HOST[:PORT]");
out:
	free(copy);
	return ret;
}

void ssh_target_release(struct ssh_target *t)
{
	free(t->host);
	free(t->user);
	free(t->identity);
	free(t->known_hosts);
	free(t->label);
	memset(t, 0, sizeof(*t));
}

static void target_copy(struct ssh_target *dst, const struct ssh_target *src)
{
	memset(dst, 0, sizeof(*dst));
	set_str(&dst->host, src->host, 0);
	set_str(&dst->user, src->user, 0);
	set_str(&dst->identity, src->identity, 0);
	set_str(&dst->known_hosts, src->known_hosts, 0);
	set_str(&dst->label, src->label, 0);
	dst->port = src->port;
	dst->connect_timeout = src->connect_timeout > 0 ? src->connect_timeout
							: SSH_DEFAULT_CONNECT_TIMEOUT;
	dst->keepalive = src->keepalive > 0 ? src->keepalive : SSH_DEFAULT_KEEPALIVE;
}

/* ---- connecting ---------------------------------------------------- */

static char *opt_string(ssh_session s, enum ssh_options_e o)
{
	char *v = NULL, *copy;
	if (ssh_options_get(s, o, &v) != SSH_OK || !v)
		return NULL;
	copy = xstrdup(v);
	ssh_string_free_char(v);
	return copy;
}

static void set_name(struct ssh_conn *c)
{
	char *host = opt_string(c->s, SSH_OPTIONS_HOST);
	char *user = opt_string(c->s, SSH_OPTIONS_USER);
	unsigned int port = 22;
	ssh_options_get_port(c->s, &port);
	free(c->name);
	c->name = xstrfmt("%s%s%s:%u", user ? user : "", user ? "@" : "",
			  host ? host : c->t.host, port);
	free(host);
	free(user);
}

static const char *remote_flag(const struct ssh_conn *c)
{
	static _Thread_local char flag[300];
	if (!c->t.label)
		return "";
	snprintf(flag, sizeof(flag), " --remote %s", c->t.label);
	return flag;
}

/*
 * An encrypted key found by ssh_userauth_publickey_auto: pystrib never
 * prompts (it runs from notebooks and CI), so note it for the error.
 */
static int auth_prompt(const char *prompt, char *out, size_t len, int echo,
		       int verify, void *userdata)
{
	struct ssh_conn *c = userdata;
	char *id = NULL;
	if (ssh_userauth_publickey_auto_get_current_identity(c->s, &id) == SSH_OK && id) {
		buf_addf(&c->skipped, "%s'%s'", c->skipped.len ? ", " : "", id);
		ssh_string_free_char(id);
	}
	return -1;
}

static int setup_session(struct ssh_conn *c)
{
	const struct ssh_target *t = &c->t;
	char *dir = expand_home("~/.ssh"), *user_cfg = xstrfmt("%s/config", dir);
	long timeout = t->connect_timeout;
	int nolog = log_verbosity >= 3 ? SSH_LOG_PROTOCOL : SSH_LOG_NOLOG;
	int no = 0, ret = -1;

	c->s = ssh_new();
	if (!c->s) {
		error_set(PS_EXIT_REMOTE, "cannot create an SSH session");
		goto out;
	}
	ssh_options_set(c->s, SSH_OPTIONS_LOG_VERBOSITY, &nolog);
	/* $HOME, like the rest of pystrib, rather than the passwd entry. */
	if (ssh_options_set(c->s, SSH_OPTIONS_SSH_DIR, dir) < 0 ||
	    ssh_options_set(c->s, SSH_OPTIONS_HOST, t->host) < 0) {
		error_set(PS_EXIT_USAGE, "invalid remote host '%s': %s", t->host,
			  ssh_get_error(c->s));
		goto out;
	}
	/* The user's file first: in ssh config the first value found wins. */
	if (access(user_cfg, R_OK) == 0 && ssh_options_parse_config(c->s, user_cfg) < 0) {
		error_set(PS_EXIT_USAGE, "cannot use '%s': %s", user_cfg, ssh_get_error(c->s));
		goto out;
	}
	if (access("/etc/ssh/ssh_config", R_OK) == 0)
		ssh_options_parse_config(c->s, "/etc/ssh/ssh_config");
	ssh_options_set(c->s, SSH_OPTIONS_PROCESS_CONFIG, &no);
	if (t->port > 0)
		ssh_options_set(c->s, SSH_OPTIONS_PORT, &t->port);
	if (t->user)
		ssh_options_set(c->s, SSH_OPTIONS_USER, t->user);
	if (t->known_hosts)
		ssh_options_set(c->s, SSH_OPTIONS_KNOWNHOSTS, t->known_hosts);
	ssh_options_set(c->s, SSH_OPTIONS_TIMEOUT, &timeout);

	free(c->known_hosts);
	c->known_hosts = opt_string(c->s, SSH_OPTIONS_KNOWNHOSTS);
	if (!c->known_hosts)
		c->known_hosts = xstrfmt("%s/known_hosts", dir);

	memset(&c->cb, 0, sizeof(c->cb));
	c->cb.userdata = c;
	c->cb.auth_function = auth_prompt;
	ssh_callbacks_init(&c->cb);
	ssh_set_callbacks(c->s, &c->cb);
	set_name(c);
	ret = 0;
out:
	free(dir);
	free(user_cfg);
	return ret;
}

/* Keepalives for the kernel too: a peer that vanished fails the socket. */
static void tune_socket(struct ssh_conn *c)
{
	int fd = ssh_get_fd(c->s), on = 1, idle = c->t.keepalive, cnt = 3;
	unsigned int user_timeout = (unsigned int)c->t.keepalive * 4 * 1000;
	if (fd < 0)
		return;
	/* Fails harmlessly on a ProxyCommand's pipe. */
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &idle, sizeof(idle));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

static int interrupted_error(void)
{
	error_set(PS_EXIT_INTERRUPTED, "interrupted");
	return SSH_R_INTERRUPTED;
}

static int fingerprint(struct ssh_conn *c, char **type)
{
	ssh_key key = NULL;
	unsigned char *hash = NULL;
	size_t len = 0;
	char *fp;

	if (ssh_get_server_publickey(c->s, &key) < 0 ||
	    ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) < 0) {
		ssh_key_free(key);
		return error_set(PS_EXIT_REMOTE, "'%s' sent no usable host key: %s",
				 c->name, ssh_get_error(c->s));
	}
	fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
	free(c->fingerprint);
	c->fingerprint = xstrdup(fp ? fp : "?");
	ssh_string_free_char(fp);
	ssh_clean_pubkey_hash(&hash);
	*type = xstrdup(ssh_key_type_to_char(ssh_key_type(key)));
	ssh_key_free(key);
	return 0;
}

static int record_host(struct ssh_conn *c, const char *type)
{
	char *dir = xstrdup(c->known_hosts), *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir_p(dir, 0700);
	}
	free(dir);
	if (ssh_session_update_known_hosts(c->s) != SSH_OK)
		return error_set(PS_EXIT_IO, "cannot record the host key of '%s' in '%s': %s",
				 c->name, c->known_hosts, ssh_get_error(c->s));
	log_warn("added the %s host key %s of '%s' to '%s'", type, c->fingerprint,
		 c->name, c->known_hosts);
	return 0;
}

/* The host as known_hosts names it: "host", or "[host]:port" off port 22. */
static char *known_hosts_name(struct ssh_conn *c)
{
	char *host = opt_string(c->s, SSH_OPTIONS_HOST), *name;
	unsigned int port = 22;
	ssh_options_get_port(c->s, &port);
	name = port == 22 ? xstrdup(host ? host : c->t.host)
			  : xstrfmt("[%s]:%u", host ? host : c->t.host, port);
	free(host);
	return name;
}

/*
 * Every connection passes here: there is no way around it. A changed key
 * is refused whatever the caller asks.
 */
static int verify_host(struct ssh_conn *c, int flags)
{
	char *type = NULL, *entry;
	int ret;

	if (fingerprint(c, &type) < 0)
		return SSH_R_FAILED;
	switch (ssh_session_is_known_server(c->s)) {
	case SSH_KNOWN_HOSTS_OK:
		ret = 0;
		break;
	case SSH_KNOWN_HOSTS_CHANGED:
	case SSH_KNOWN_HOSTS_OTHER:
		entry = known_hosts_name(c);
		error_set(PS_EXIT_REMOTE,
			  "the host key of '%s' has CHANGED: it now sends the %s key %s, which "
			  "'%s' does not hold for it; refusing to connect (someone may be "
			  "intercepting the connection, or the host was reinstalled)",
			  c->name, type, c->fingerprint, c->known_hosts);
		error_hint("no option overrides this. If the host's administrator confirms the new "
			   "fingerprint, remove the old entry (ssh-keygen -R '%s' -f '%s') and run "
			   "'pystrib doctor --trust-host%s'", entry, c->known_hosts, remote_flag(c));
		free(entry);
		ret = SSH_R_HOSTKEY_CHANGED;
		break;
	case SSH_KNOWN_HOSTS_UNKNOWN:
	case SSH_KNOWN_HOSTS_NOT_FOUND:
		if (flags & SSH_ACCEPT_NEW_HOSTKEY) {
			ret = record_host(c, type) < 0 ? SSH_R_FAILED : 0;
			break;
		}
		error_set(PS_EXIT_REMOTE, "host '%s' is not known: its %s key is %s",
			  c->name, type, c->fingerprint);
		error_hint("if that fingerprint is the host's, trust it with 'pystrib doctor "
			   "--trust-host%s' or pass --accept-new-host-key to this run "
			   "(it is recorded in '%s')", remote_flag(c), c->known_hosts);
		ret = SSH_R_HOSTKEY_UNKNOWN;
		break;
	default:
		error_set(PS_EXIT_REMOTE, "cannot check the host key of '%s' against '%s': %s",
			  c->name, c->known_hosts, ssh_get_error(c->s));
		ret = SSH_R_FAILED;
		break;
	}
	free(type);
	return ret;
}

static int auth_result(struct ssh_conn *c, int rc, struct buf *tried, const char *what)
{
	buf_addf(tried, "%s%s", tried->len ? ", " : "", what);
	if (rc == SSH_AUTH_ERROR)
		return error_set(PS_EXIT_REMOTE, "lost '%s' while logging in: %s",
				 c->name, ssh_get_error(c->s)), SSH_R_DROPPED;
	return rc == SSH_AUTH_SUCCESS ? 1 : 0;
}

static int try_identity(struct ssh_conn *c, struct buf *tried)
{
	ssh_key key = NULL;
	char *what;
	int rc;

	if (ssh_pki_import_privkey_file(c->t.identity, NULL, NULL, NULL, &key) != SSH_OK) {
		if (access(c->t.identity, R_OK) < 0)
			what = xstrfmt("identity '%s' (%s)", c->t.identity, strerror(errno));
		else
			what = xstrfmt("identity '%s' (not a key, or encrypted: load it with "
				       "ssh-add)", c->t.identity);
		buf_addf(tried, "%s%s", tried->len ? ", " : "", what);
		free(what);
		return 0;
	}
	what = xstrfmt("identity '%s'", c->t.identity);
	rc = auth_result(c, ssh_userauth_publickey(c->s, NULL, key), tried, what);
	free(what);
	ssh_key_free(key);
	return rc;
}

static int authenticate(struct ssh_conn *c)
{
	struct buf tried = BUF_INIT;
	int rc, methods, ret = SSH_R_AUTH;

	rc = ssh_userauth_none(c->s, NULL);
	if (rc == SSH_AUTH_SUCCESS)
		return 0;
	if (rc == SSH_AUTH_ERROR)
		return error_set(PS_EXIT_REMOTE, "lost '%s' while logging in: %s",
				 c->name, ssh_get_error(c->s)), SSH_R_DROPPED;
	methods = ssh_userauth_list(c->s, NULL);
	if (!(methods & SSH_AUTH_METHOD_PUBLICKEY)) {
		error_set(PS_EXIT_REMOTE, "'%s' does not accept public keys", c->name);
		error_hint("pystrib logs in with keys only: enable PubkeyAuthentication on the host");
		return SSH_R_AUTH;
	}
	buf_reset(&c->skipped);
	if (getenv("SSH_AUTH_SOCK") &&
	    (rc = auth_result(c, ssh_userauth_agent(c->s, NULL), &tried, "ssh-agent")) != 0)
		goto done;
	if (c->t.identity && (rc = try_identity(c, &tried)) != 0)
		goto done;
	rc = auth_result(c, ssh_userauth_publickey_auto(c->s, NULL, NULL), &tried,
			 "the default keys (~/.ssh/id_ed25519, id_ecdsa, id_rsa, "
			 "IdentityFile of ~/.ssh/config)");
done:
	if (rc == 1) {
		ret = 0;
	} else if (rc < 0) {
		ret = rc;
	} else {
		error_set(PS_EXIT_REMOTE, "'%s' refused every key: tried %s%s%s", c->name,
			  tried.ptr, c->skipped.len ? "; skipped encrypted keys " : "",
			  c->skipped.ptr);
		error_hint("add your public key to ~/.ssh/authorized_keys of that user on the "
			   "host, set [remote] identity (or IdentityFile in ~/.ssh/config), "
			   "or load an encrypted key with ssh-add");
	}
	buf_release(&tried);
	return ret;
}

static void conn_close(struct ssh_conn *c)
{
	if (!c->s)
		return;
	if (ssh_is_connected(c->s))
		ssh_disconnect(c->s);
	ssh_free(c->s);
	c->s = NULL;
}

static int conn_connect(struct ssh_conn *c, int flags)
{
	int rc;

	conn_close(c);
	if (setup_session(c) < 0)
		return SSH_R_FAILED;
	log_info("connecting to '%s'", c->name);
	if (ssh_connect(c->s) != SSH_OK) {
		if (interrupt_requested())
			return interrupted_error();
		error_set(PS_EXIT_REMOTE, "cannot reach '%s': %s", c->name, ssh_get_error(c->s));
		error_hint("check that the host is up and sshd listens on that port "
			   "([remote] host and port, or Host/Port in ~/.ssh/config)");
		rc = SSH_R_UNREACHABLE;
		goto fail;
	}
	/* Now expanded by libssh (~, %d), if ~/.ssh/config named the file. */
	char *kh = opt_string(c->s, SSH_OPTIONS_KNOWNHOSTS);
	if (kh) {
		free(c->known_hosts);
		c->known_hosts = kh;
	}
	if ((rc = verify_host(c, flags)) < 0)
		goto fail;
	if ((rc = authenticate(c)) < 0) {
		if (interrupt_requested())
			rc = interrupted_error();
		goto fail;
	}
	tune_socket(c);
	c->next_keepalive = now_monotonic() + c->t.keepalive;
	log_info("logged in to '%s'", c->name);
	return 0;
fail:
	conn_close(c);
	return rc;
}

int ssh_conn_open(struct ssh_conn **out, const struct ssh_target *t, int flags)
{
	struct ssh_conn *c;
	int rc;

	if (check_names(t) < 0)
		return SSH_R_FAILED;
	c = xcalloc(1, sizeof(*c));
	buf_init(&c->skipped, 4096);
	target_copy(&c->t, t);
	rc = conn_connect(c, flags);
	if (rc < 0) {
		ssh_conn_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int ssh_conn_reconnect(struct ssh_conn *c)
{
	return conn_connect(c, 0);
}

void ssh_conn_free(struct ssh_conn *c)
{
	if (!c)
		return;
	conn_close(c);
	ssh_target_release(&c->t);
	free(c->name);
	free(c->fingerprint);
	free(c->known_hosts);
	buf_release(&c->skipped);
	free(c);
}

const char *ssh_conn_name(const struct ssh_conn *c)
{
	return c->name;
}

const char *ssh_conn_fingerprint(const struct ssh_conn *c)
{
	return c->fingerprint ? c->fingerprint : "";
}

/* ---- commands ------------------------------------------------------ */

struct exec_state {
	struct ssh_channel_callbacks_struct cb;
	const struct ssh_exec_opts *o;
	int status, have_status, closed, stopped;
};

static int on_data(ssh_session s, ssh_channel ch, void *data, uint32_t len,
		   int is_stderr, void *userdata)
{
	struct exec_state *st = userdata;
	/* After a stop, the rest is drained and dropped. */
	if (!st->stopped && st->o->on_output &&
	    st->o->on_output(st->o->ctx, is_stderr ? 2 : 1, data, len) < 0)
		st->stopped = 1;
	return (int)len;
}

static void on_exit_status(ssh_session s, ssh_channel ch, int status, void *userdata)
{
	struct exec_state *st = userdata;
	st->status = status;
	st->have_status = 1;
}

static void on_exit_signal(ssh_session s, ssh_channel ch, const char *sig, int core,
			   const char *msg, const char *lang, void *userdata)
{
	static const struct { const char *name; int num; } sigs[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "QUIT", SIGQUIT },
		{ "ILL", SIGILL }, { "ABRT", SIGABRT }, { "FPE", SIGFPE },
		{ "KILL", SIGKILL }, { "SEGV", SIGSEGV }, { "PIPE", SIGPIPE },
		{ "ALRM", SIGALRM }, { "TERM", SIGTERM }, { "USR1", SIGUSR1 },
		{ "USR2", SIGUSR2 }, { "BUS", SIGBUS },
	};
	struct exec_state *st = userdata;
	st->status = 255;
	for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
		if (sig && !strcmp(sig, sigs[i].name))
			st->status = 128 + sigs[i].num;
	st->have_status = 1;
}

static void on_close(ssh_session s, ssh_channel ch, void *userdata)
{
	struct exec_state *st = userdata;
	st->closed = 1;
}

static int session_lost(struct ssh_conn *c)
{
	return !ssh_is_connected(c->s) ||
	       (ssh_get_status(c->s) & (SSH_CLOSED | SSH_CLOSED_ERROR));
}

static int dropped(struct ssh_conn *c, const char *doing)
{
	error_set(PS_EXIT_REMOTE, "lost the connection to '%s' while %s: %s", c->name,
		  doing, *ssh_get_error(c->s) ? ssh_get_error(c->s) : "connection closed");
	return SSH_R_DROPPED;
}

/* Standard input still to send, from the buffer, then the file. */
struct feed {
	const char *in;
	size_t in_len, off;
	int fd;
	char chunk[32768];
	size_t clen, coff;
	int eof_sent;		/* or, with keep_open, all sent */
	int keep_open;
};

/*
 * Sends what the remote window takes now, never more, so that a command
 * which writes a lot while reading its stdin cannot deadlock us.
 */
static int feed_stdin(struct ssh_conn *c, ssh_channel ch, struct feed *f)
{
	while (!f->eof_sent) {
		uint32_t win = ssh_channel_window_size(ch);
		const char *p;
		size_t n;

		if (f->off < f->in_len) {
			p = f->in + f->off;
			n = f->in_len - f->off;
		} else if (f->coff < f->clen) {
			p = f->chunk + f->coff;
			n = f->clen - f->coff;
		} else if (f->fd >= 0) {
			ssize_t r = read(f->fd, f->chunk, sizeof(f->chunk));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return error_set(PS_EXIT_IO, "cannot read the data to send: %s",
						 strerror(errno));
			if (r == 0) {
				f->fd = -1;
				continue;
			}
			f->clen = (size_t)r;
			f->coff = 0;
			continue;
		} else {
			if (!f->keep_open && ssh_channel_send_eof(ch) != SSH_OK)
				return dropped(c, "sending data");
			f->eof_sent = 1;
			break;
		}
		if (win == 0)
			break;
		if (n > win)
			n = win;
		int w = ssh_channel_write(ch, p, (uint32_t)n);
		if (w < 0)
			return dropped(c, "sending data");
		if (f->off < f->in_len)
			f->off += (size_t)w;
		else
			f->coff += (size_t)w;
		if ((size_t)w < n)
			break;
	}
	return 0;
}

static int keepalive(struct ssh_conn *c)
{
	double now = now_monotonic();
	if (now < c->next_keepalive)
		return 0;
	c->next_keepalive = now + c->t.keepalive;
	if (ssh_send_keepalive(c->s) != SSH_OK)
		return dropped(c, "waiting");
	return 0;
}

static int wait_ms(struct ssh_conn *c, const struct ssh_exec_opts *o, double next_tick,
		   const struct feed *f)
{
	double now = now_monotonic(), until = c->next_keepalive;
	if (next_tick < until)
		until = next_tick;
	if (o->deadline > 0 && o->deadline < until)
		until = o->deadline;
	double ms = (until - now) * 1000;
	/* While stdin waits for the window to open, look again soon. */
	if (!f->eof_sent && ms > 50)
		ms = 50;
	return ms < 1 ? 1 : ms > 1000 ? 1000 : (int)ms;
}

/* The loop of ssh_conn_exec, once the command runs. */
static int exec_loop(struct ssh_conn *c, ssh_channel ch, struct exec_state *st,
		     struct feed *f)
{
	const struct ssh_exec_opts *o = st->o;
	double tick = o->tick > 0 ? o->tick : 1, next_tick = now_monotonic() + tick;
	ssh_event ev = ssh_event_new();
	int ret = SSH_R_FAILED;

	if (!ev || ssh_event_add_session(ev, c->s) != SSH_OK) {
		error_set(PS_EXIT_REMOTE, "cannot wait for '%s'", c->name);
		goto out;
	}
	for (;;) {
		if (feed_stdin(c, ch, f) < 0) {
			ret = session_lost(c) ? SSH_R_DROPPED : SSH_R_FAILED;
			goto out;
		}
		if (st->stopped) {
			ret = SSH_R_FAILED;	/* the callback set the error */
			goto out;
		}
		if (st->closed || (ssh_channel_is_eof(ch) && st->have_status) ||
		    ssh_channel_is_closed(ch)) {
			ret = 0;
			break;
		}
		if (interrupt_requested()) {
			ret = interrupted_error();
			goto out;
		}
		if (o->deadline > 0 && now_monotonic() >= o->deadline) {
			error_set(PS_EXIT_TIMEOUT, "remote command on '%s' timed out", c->name);
			ret = SSH_R_TIMEOUT;
			goto out;
		}
		if (o->on_tick && now_monotonic() >= next_tick) {
			next_tick = now_monotonic() + tick;
			if (o->on_tick(o->ctx) < 0)
				goto out;
		}
		if (keepalive(c) < 0) {
			ret = SSH_R_DROPPED;
			goto out;
		}
		/* SSH_ERROR also means a signal interrupted poll: look at the session. */
		ssh_event_dopoll(ev, wait_ms(c, o, next_tick, f));
		if (session_lost(c)) {
			if (!st->stopped && (st->closed ||
					     (st->have_status && ssh_channel_is_eof(ch)))) {
				ret = 0;
				break;
			}
			if (interrupt_requested()) {
				ret = interrupted_error();
				goto out;
			}
			ret = dropped(c, "running a command");
			goto out;
		}
	}
out:
	if (ev) {
		ssh_event_remove_session(ev, c->s);
		ssh_event_free(ev);
	}
	return ret;
}

/*
 * A channel that runs command, or (command NULL) is a stream to the UNIX
 * socket at path; fed and read by exec_loop.
 */
static int run_channel(struct ssh_conn *c, const char *command, const char *path,
		       const struct ssh_exec_opts *o, int *exit_status)
{
	static const struct ssh_exec_opts none = SSH_EXEC_OPTS_INIT;
	struct exec_state st;
	struct feed f;
	ssh_channel ch = NULL;
	int ret;

	if (!o)
		o = &none;
	if (!c->s || session_lost(c)) {
		error_set(PS_EXIT_REMOTE, "not connected to '%s'", c->name);
		return SSH_R_DROPPED;
	}
	memset(&st, 0, sizeof(st));
	st.o = o;
	st.cb.userdata = &st;
	st.cb.channel_data_function = on_data;
	st.cb.channel_exit_status_function = on_exit_status;
	st.cb.channel_exit_signal_function = on_exit_signal;
	st.cb.channel_close_function = on_close;
	ssh_callbacks_init(&st.cb);
	memset(&f, 0, sizeof(f));
	f.in = o->in;
	f.in_len = o->in ? o->in_len : 0;
	f.fd = o->in_fd;
	/* A stream gets no EOF: a server that reads EOF as the client hanging
	 * up (Go's net/http: the docker engine) would drop what it is doing,
	 * and sshd may close the stream before the answer comes. */
	f.keep_open = !command;

	ch = ssh_channel_new(c->s);
	if (!command) {
		log_debug("ssh %s: stream to %s", c->name, path);
		if (!ch || ssh_channel_open_forward_unix(ch, path, "127.0.0.1", 0) != SSH_OK) {
			ret = ssh_is_connected(c->s) ? (error_set(PS_EXIT_REMOTE,
				"'%s' opened no stream to '%s': %s", c->name, path,
				ssh_get_error(c->s)), SSH_R_FAILED) : dropped(c, "opening a stream");
			goto out;
		}
		ssh_set_channel_callbacks(ch, &st.cb);
		st.have_status = 1;	/* a stream ends at its EOF */
		ret = exec_loop(c, ch, &st, &f);
		goto out;
	}
	log_debug("ssh %s: %s", c->name, command);
	if (!ch || ssh_channel_open_session(ch) != SSH_OK) {
		ret = ssh_is_connected(c->s) ? (error_set(PS_EXIT_REMOTE,
			"'%s' refused a session: %s", c->name, ssh_get_error(c->s)), SSH_R_FAILED)
			: dropped(c, "opening a session");
		goto out;
	}
	ssh_set_channel_callbacks(ch, &st.cb);
	if (ssh_channel_request_exec(ch, command) != SSH_OK) {
		ret = ssh_is_connected(c->s) ? (error_set(PS_EXIT_REMOTE,
			"'%s' refused to run a command: %s", c->name, ssh_get_error(c->s)),
			SSH_R_FAILED) : dropped(c, "starting a command");
		goto out;
	}
	ret = exec_loop(c, ch, &st, &f);
	if (ret == 0)
		*exit_status = st.have_status ? st.status : 255;
	else if (ret != SSH_R_DROPPED && ssh_is_connected(c->s))
		/* Cancelled: ask the remote command to stop (closing follows). */
		ssh_channel_request_send_signal(ch, "TERM");
out:
	if (ch) {
		/* libssh may keep a channel whose close is not acknowledged yet
		 * and hand what still comes for it to its callbacks: st is gone. */
		ssh_remove_channel_callbacks(ch, &st.cb);
		if (ssh_is_connected(c->s) && !ssh_channel_is_closed(ch))
			ssh_channel_close(ch);
		ssh_channel_free(ch);
	}
	return ret;
}

int ssh_conn_exec(struct ssh_conn *c, const char *command,
		  const struct ssh_exec_opts *o, int *exit_status)
{
	return run_channel(c, command, NULL, o, exit_status);
}

int ssh_conn_unix_stream(struct ssh_conn *c, const char *path, const struct ssh_exec_opts *o)
{
	return run_channel(c, NULL, path, o, NULL);
}

/* ---- capture, upload, download ------------------------------------- */

/* Keeps the last part of stderr for messages, however much there is. */
static void tail_add(struct buf *b, const char *data, size_t len)
{
	const size_t keep = 8192;
	if (len > keep) {
		data += len - keep;
		len = keep;
	}
	if (b->len + len > 2 * keep) {
		size_t drop = b->len + len - keep;
		if (drop > b->len)
			drop = b->len;
		memmove(b->ptr, b->ptr + drop, b->len - drop);
		buf_setlen(b, b->len - drop);
	}
	buf_add(b, data, len);
}

struct capture {
	struct buf *out, *err;
	size_t out_max, err_max;
	int toobig;
};

static int capture_one(struct capture *cap, struct buf *b, size_t max,
		       const char *data, size_t len)
{
	if (b->len + len > max || buf_add(b, data, len) < 0) {
		cap->toobig = 1;
		return error_set(PS_EXIT_REMOTE,
				 "the output of a remote command is too large (more than %zu bytes)",
				 max);
	}
	return 0;
}

static int capture_output(void *ctx, int fd, const char *data, size_t len)
{
	struct capture *cap = ctx;
	if (fd == 1 && cap->out)
		return capture_one(cap, cap->out, cap->out_max, data, len);
	if (fd == 2 && cap->err)
		return capture_one(cap, cap->err, cap->err_max, data, len);
	return 0;
}

int ssh_conn_capture(struct ssh_conn *c, const char *command,
		     const void *in, size_t in_len,
		     struct buf *out, struct buf *err, int *exit_status)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct capture cap = { out, err, SSH_CAPTURE_MAX, SSH_CAPTURE_MAX, 0 };
	int ret;

	if (out && out->max)
		cap.out_max = out->max;
	if (err && err->max)
		cap.err_max = err->max;
	o.in = in;
	o.in_len = in_len;
	o.on_output = capture_output;
	o.ctx = &cap;
	ret = ssh_conn_exec(c, command, &o, exit_status);
	if (ret == SSH_R_FAILED && cap.toobig)
		ret = SSH_R_TOOBIG;
	return ret;
}

struct run_ctx {
	struct buf *out;
	struct buf err;
	int toobig;
	int (*write_fn)(void *ctx, const void *data, size_t len);
	void *ctx;
};

static int run_output(void *ctx, int fd, const char *data, size_t len)
{
	struct run_ctx *r = ctx;
	if (fd == 2) {
		tail_add(&r->err, data, len);
		return 0;
	}
	if (r->write_fn)
		return r->write_fn(r->ctx, data, len);
	if (!r->out)
		return 0;
	size_t max = r->out->max ? r->out->max : SSH_CAPTURE_MAX;
	if (r->out->len + len > max || buf_add(r->out, data, len) < 0) {
		r->toobig = 1;
		return error_set(PS_EXIT_REMOTE,
				 "the output of a remote command is too large (more than %zu bytes)",
				 max);
	}
	return 0;
}

static int run_common(struct ssh_conn *c, const char *command, const char *program,
		      struct ssh_exec_opts *o, struct run_ctx *r)
{
	int status = 0, ret;

	o->on_output = run_output;
	o->ctx = r;
	ret = ssh_conn_exec(c, command, o, &status);
	if (ret == SSH_R_FAILED && r->toobig)
		ret = SSH_R_TOOBIG;
	else if (ret == 0 && status != 0)
		ret = ssh_command_failed(c, program, status, r->err.ptr);
	buf_release(&r->err);
	return ret;
}

int ssh_conn_run(struct ssh_conn *c, const char *command, const char *program,
		 struct buf *out)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct run_ctx r = { out, BUF_INIT, 0, NULL, NULL };
	return run_common(c, command, program, &o, &r);
}

int ssh_conn_download(struct ssh_conn *c, const char *command, const char *program,
		      int (*write_fn)(void *ctx, const void *data, size_t len),
		      void *ctx)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct run_ctx r = { NULL, BUF_INIT, 0, write_fn, ctx };
	return run_common(c, command, program, &o, &r);
}

/*
 * cat into a temporary file beside the target, check that every byte came
 * (a dropped connection ends cat's input early, and cat would succeed),
 * then chmod and rename over the target; on any failure remove the
 * temporary file.
 */
static char *upload_command(const char *remote_path, size_t len, unsigned mode)
{
	struct buf cmd = BUF_INIT, tmp = BUF_INIT, dst = BUF_INIT;
	char *tmpname = xstrfmt("%s.pystrib-tmp-%ld-%u", remote_path, (long)getpid(),
				(unsigned)(now_wall() * 1000) % 100000u);

	shquote_path(&tmp, tmpname);
	shquote_path(&dst, remote_path);
	buf_addf(&cmd, "cat > %s && [ $(wc -c < %s) -eq %zu ] && chmod %04o %s && "
		 "mv -f %s %s || { rc=$?; rm -f %s; [ $rc -ne 0 ] || rc=1; exit $rc; }",
		 tmp.ptr, tmp.ptr, len, mode & 07777, tmp.ptr, tmp.ptr, dst.ptr, tmp.ptr);
	buf_release(&tmp);
	buf_release(&dst);
	free(tmpname);
	return buf_detach(&cmd, NULL);
}

static int upload(struct ssh_conn *c, const char *remote_path, const void *data,
		  size_t len, int fd, unsigned mode)
{
	struct ssh_exec_opts o = SSH_EXEC_OPTS_INIT;
	struct run_ctx r = { NULL, BUF_INIT, 0, NULL, NULL };
	char *cmd = upload_command(remote_path, len, mode);
	int ret;

	o.in = data;
	o.in_len = data ? len : 0;
	o.in_fd = fd;
	ret = run_common(c, cmd, "cat", &o, &r);
	if (ret < 0)
		error_wrap("cannot upload '%s' to '%s'", remote_path, c->name);
	free(cmd);
	return ret;
}

int ssh_conn_upload(struct ssh_conn *c, const char *remote_path,
		    const void *data, size_t len, unsigned mode)
{
	return upload(c, remote_path, data, len, -1, mode);
}

int ssh_conn_upload_file(struct ssh_conn *c, const char *remote_path,
			 const char *local_path, unsigned mode)
{
	struct stat st;
	const char *why = NULL;
	int fd = open(local_path, O_RDONLY | O_CLOEXEC), ret;

	if (fd < 0 || fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (!S_ISREG(st.st_mode))
		why = "not a regular file";	/* not a stale errno */
	if (why) {
		ret = error_set(PS_EXIT_IO, "cannot read '%s': %s", local_path, why);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	ret = upload(c, remote_path, NULL, (size_t)st.st_size, fd, mode);
	close(fd);
	return ret;
}

/* ---- failures of remote commands ------------------------------------ */

/* "sh: 1: docker: not found" / "bash: docker: command not found" -> "docker" */
static char *missing_program(const char *err)
{
	const char *p = strstr(err, ": not found");
	if (!p)
		p = strstr(err, ": command not found");
	if (!p)
		return NULL;
	const char *start = p;
	while (start > err && start[-1] != ' ' && start[-1] != '\n')
		start--;
	if (start == p)
		return NULL;
	return xstrndup(start, (size_t)(p - start));
}

static char *last_line(const char *err)
{
	size_t n = strlen(err);
	while (n && (err[n - 1] == '\n' || err[n - 1] == '\r' || err[n - 1] == ' '))
		n--;
	size_t start = n;
	while (start && err[start - 1] != '\n')
		start--;
	return xstrndup(err + start, n - start);
}

int ssh_command_failed(const struct ssh_conn *c, const char *program,
		       int status, const char *err)
{
	const char *host = c ? c->name : "remote";
	char *missing = NULL, *line = NULL;

	if (!err)
		err = "";
	if (strstr(err, "No space left on device")) {
		error_set(PS_EXIT_REMOTE, "the disk of remote host '%s' is full (%s: No space "
			  "left on device)", host, program);
		error_hint("free space on '%s' (df -h; old jobs go with 'pystrib gc')", host);
	} else if ((missing = missing_program(err)) || status == 127) {
		const char *name = missing ? missing : program;
		error_set(PS_EXIT_REMOTE, "remote host '%s' has no '%s'", host, name);
		error_hint("install '%s' there, or make it reachable on the PATH of "
			   "non-interactive SSH sessions (check: ssh HOST command -v %s)", name, name);
	} else {
		line = last_line(err);
		if (*line)
			error_set(PS_EXIT_REMOTE, "remote command '%s' on '%s' failed (exit %d): %s",
				  program, host, status, line);
		else
			error_set(PS_EXIT_REMOTE, "remote command '%s' on '%s' failed (exit %d)",
				  program, host, status);
	}
	free(missing);
	free(line);
	return SSH_R_FAILED;
}

/* ---- long-lived streams -------------------------------------------- */

struct ssh_stream {
	struct ssh_conn *c;
	ssh_channel ch;
	int eof;
};

int ssh_stream_open(struct ssh_conn *c, const char *path, struct ssh_stream **out)
{
	if (!c->s || session_lost(c)) {
		error_set(PS_EXIT_REMOTE, "not connected to '%s'", c->name);
		return SSH_R_DROPPED;
	}
	ssh_channel ch = ssh_channel_new(c->s);
	log_debug("ssh %s: stream to %s", c->name, path);
	if (!ch || ssh_channel_open_forward_unix(ch, path, "127.0.0.1", 0) != SSH_OK) {
		int ret = ssh_is_connected(c->s) ? (error_set(PS_EXIT_REMOTE,
			"'%s' opened no stream to '%s': %s", c->name, path,
			ssh_get_error(c->s)), SSH_R_FAILED) : dropped(c, "opening a stream");
		if (ch)
			ssh_channel_free(ch);
		return ret;
	}
	/* A conversation of small messages: Nagle's wait would add its 40 ms
	 * (the peer's delayed ACK) to every answer. Fails harmlessly on a
	 * ProxyCommand's pipe. */
	int fd = ssh_get_fd(c->s), on = 1;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	struct ssh_stream *st = xcalloc(1, sizeof(*st));
	st->c = c;
	st->ch = ch;
	*out = st;
	return 0;
}

int ssh_stream_write(struct ssh_stream *st, const void *data, size_t len)
{
	const char *p = data;
	while (len > 0) {
		/* Blocking: libssh waits for the window, keeping what arrives. */
		uint32_t n = len > (1u << 20) ? 1u << 20 : (uint32_t)len;
		int w = ssh_channel_write(st->ch, p, n);
		if (w < 0 || session_lost(st->c))
			return dropped(st->c, "sending data");
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* What ssh_stream_read got from the channel: bytes, 0, or an error code. */
static int stream_take(struct ssh_stream *st, void *buf, size_t len)
{
	/* sshd does not disable Nagle for a forwarded stream: its second small
	 * packet waits for our ACK, which Linux delays by up to 40 ms unless
	 * asked (each time: the kernel falls back to delaying). */
	int fd = ssh_get_fd(st->c->s), on = 1;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof(on));
	int n = ssh_channel_read_nonblocking(st->ch, buf, (uint32_t)(len > INT32_MAX ? INT32_MAX : len), 0);
	if (n > 0)
		return n;
	if (n == SSH_ERROR || session_lost(st->c))
		return dropped(st->c, "reading a stream");
	if (n == SSH_EOF || ssh_channel_is_eof(st->ch) || ssh_channel_is_closed(st->ch)) {
		st->eof = 1;
		error_set(PS_EXIT_REMOTE, "'%s' closed the stream", st->c->name);
		return SSH_R_FAILED;
	}
	return 0;
}

int ssh_stream_read(struct ssh_stream *st, void *buf, size_t len, int timeout_ms, int wake_fd)
{
	struct pollfd fds[2];
	int n = stream_take(st, buf, len);
	if (n != 0)
		return n;
	if (keepalive(st->c) < 0)
		return SSH_R_DROPPED;
	double left = st->c->next_keepalive - now_monotonic();
	if (left * 1000 < timeout_ms)
		timeout_ms = left < 0 ? 0 : (int)(left * 1000) + 1;
	fds[0].fd = ssh_get_fd(st->c->s);
	fds[0].events = POLLIN;
	fds[1].fd = wake_fd;
	fds[1].events = POLLIN;
	if (poll(fds, wake_fd >= 0 ? 2 : 1, timeout_ms) < 0 && errno != EINTR)
		return dropped(st->c, "waiting on a stream");
	return stream_take(st, buf, len);
}

int ssh_stream_eof(const struct ssh_stream *st)
{
	return st->eof;
}

void ssh_stream_free(struct ssh_stream *st)
{
	if (!st)
		return;
	if (st->c->s && ssh_is_connected(st->c->s) && !ssh_channel_is_closed(st->ch))
		ssh_channel_close(st->ch);
	ssh_channel_free(st->ch);
	free(st);
}
