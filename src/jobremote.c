#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "jobrec.h"
#include "jobremote.h"
#include "jobstate.h"
#include "reason.h"
#include "log.h"
#include "remote_job.h"
#include "ssh.h"
#include "util.h"

/* An absolute form of path (relative to the working directory). Caller frees. */
static char *absolute(const char *path)
{
	char cwd[4096];
	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return xstrdup(path);
	while (path[0] == '.' && path[1] == '/')
		for (path += 2; *path == '/'; path++)
			;
	if (!strcmp(path, ".") || !*path)
		return xstrdup(cwd);
	return xstrfmt("%s/%s", cwd, path);
}

static void set_absolute(char **field, const char *path)
{
	char *abs = path && *path ? absolute(path) : NULL;
	jobrec_set(field, abs);
	free(abs);
}

void jobrec_set_target(struct jobrec *r, const struct ssh_target *t, const char *config_file,
		       const char *workdir)
{
	jobrec_set(&r->ssh_host, t->host);
	r->ssh_port = t->port > 0 ? t->port : 0;
	jobrec_set(&r->ssh_user, t->user);
	set_absolute(&r->identity, t->identity);
	set_absolute(&r->known_hosts, t->known_hosts);
	jobrec_set(&r->workdir, workdir);
	set_absolute(&r->config_file, config_file);
}

/* 1 if r says by itself where its host is (jobrec_set_target, or --host). */
static int has_target(const struct jobrec *r)
{
	return (r->ssh_host && *r->ssh_host) || (r->host && *r->host);
}

/*
 * The config file to read for r: -c FILE when given, else the one the job
 * was submitted with while it is still there, else the usual search.
 */
static const char *config_for(const struct jobrec *r, const char *config_file)
{
	if (config_file)
		return config_file;
	if (r->config_file && access(r->config_file, R_OK) == 0)
		return r->config_file;
	return NULL;
}

static int remote_configured(const struct config *cfg, const char *name)
{
	const char **names = config_remote_names(cfg);
	int found = 0;
	for (size_t i = 0; names[i] && !found; i++)
		found = !strcmp(names[i], name);
	free(names);
	return found;
}

static int remote_gone_error(const struct jobrec *r, const struct config *cfg)
{
	error_set(PS_EXIT_USAGE, "job '%s' ran on remote '%s', which is no longer configured in %s",
		  r->id, r->remote, cfg->file ? cfg->file : "any config file");
	if (r->config_file && (!cfg->file || strcmp(r->config_file, cfg->file)))
		return error_hint("it was submitted with '%s'%s: pass -c with it, or add a [remote.%s]"
				  " section back", r->config_file,
				  access(r->config_file, R_OK) ? ", which is gone" : "", r->remote);
	return error_hint("add a [remote.%s] section back to reach the job%s%s%s",
			  r->remote, r->host_name ? " (it was on " : "",
			  r->host_name ? r->host_name : "",
			  r->host_name ? ")" : "");
}

int jobrec_config(const struct jobrec *r, const char *config_file, struct config *cfg)
{
	const char *file = config_for(r, config_file);

	if (config_load(cfg, file, NULL) < 0)
		return -1;
	if (!r->remote)
		return 0;
	if (!remote_configured(cfg, r->remote)) {
		/* The record knows where the job is: this config only fills in the rest. */
		return has_target(r) ? 0 : remote_gone_error(r, cfg);
	}
	config_release(cfg);
	return config_load(cfg, file, r->remote);
}

/* A file the record names that is needed to reach the job, if it is gone. */
static int check_file(const struct jobrec *r, const char *what, const char *path)
{
	char *rec;

	if (!path || access(path, R_OK) == 0)
		return 0;
	if (errno == ENOENT)
		error_set(PS_EXIT_USAGE, "cannot reach job '%s': its %s file '%s' is gone", r->id,
			  what, path);
	else
		error_set(PS_EXIT_USAGE, "cannot reach job '%s': cannot read its %s file '%s': %s",
			  r->id, what, path, strerror(errno));
	rec = jobrec_path(r->id);
	error_hint("put it back, or change '%s' in the job's record '%s'", what, rec);
	free(rec);
	return -1;
}

/*
 * The target the record holds. It is whole: a user or identity it lacks
 * was left to ~/.ssh/config, the agent or the defaults at submit, and is
 * left to them again rather than taken from whatever config is read now.
 */
static int record_target(const struct jobrec *r, struct ssh_target *t)
{
	if (check_file(r, "identity", r->identity) < 0 ||
	    check_file(r, "known_hosts", r->known_hosts) < 0)
		return -1;
	jobrec_set(&t->host, r->ssh_host);
	t->port = r->ssh_port;
	jobrec_set(&t->user, r->ssh_user);
	jobrec_set(&t->identity, r->identity);
	jobrec_set(&t->known_hosts, r->known_hosts);
	jobrec_set(&t->label, r->remote);
	return 0;
}

int jobrec_target(const struct jobrec *r, const char *config_file,
		  struct config *cfg, struct ssh_target *t)
{
	if (jobrec_config(r, config_file, cfg) < 0)
		return -1;
	if (r->ssh_host && *r->ssh_host)
		return record_target(r, t);
	if (!r->host)
		return ssh_target_from_config(t, cfg);
	/* An older record with --host: identity and known_hosts from the config. */
	if (ssh_target_from_config(t, cfg) < 0)
		error_clear();
	return ssh_target_parse(t, r->host);
}

char *jobrec_remote_dir(const struct jobrec *r, const struct config *cfg)
{
	if (r->jobdir && *r->jobdir)
		return xstrdup(r->jobdir);
	if (r->workdir && *r->workdir)
		return remote_job_dir(r->workdir, r->id);
	return remote_job_dir(cfg ? cfg->remote.workdir : NULL, r->id);
}

char *jobrec_results_dir(const struct jobrec *r, const struct config *cfg, const char *want)
{
	char *rel, *home, *dest;

	if (want)
		return absolute(want);
	if (r->results)
		return xstrdup(r->results);
	rel = xstrfmt("%s/%s", cfg->job.results ? cfg->job.results : "pystrib-results", r->id);
	home = expand_home(rel);
	dest = absolute(home);
	free(home);
	free(rel);
	return dest;
}

int jobrec_connect(const struct jobrec *r, const char *config_file, struct config *cfg,
		   struct ssh_conn **out)
{
	struct ssh_target t = SSH_TARGET_INIT;
	int ret;

	ret = jobrec_target(r, config_file, cfg, &t);
	if (ret == 0)
		ret = ssh_conn_open(out, &t, 0);
	ssh_target_release(&t);
	return ret;
}

void jobrec_apply_state(struct jobrec *r, const struct remote_job_state *st)
{
	/*
	 * A job known to have ended keeps its outcome when its directory is
	 * removed afterwards; only the reason says it is gone. And a state
	 * never goes back from an outcome: a read that began before another
	 * process recorded the end (`jobs` beside `run`) may be applied after
	 * it. (`lost` is no outcome: a directory seen again is followed again.)
	 */
	int ended = job_state_outcome(r->state);
	int gone = ended && !strcmp(st->state, JOB_STATE_LOST);
	int stale = ended && !job_state_final(st->state);

	if (stale)
		return;
	if (!gone)
		jobrec_set(&r->state, st->state);
	jobrec_set(&r->state_reason, st->reason);
	jobrec_set(&r->state_code, st->code ? reason_name(st->code) : NULL);
	if (st->exit_code >= 0)
		r->exit_code = st->exit_code;
	if (st->started > 0)
		r->started = st->started;
	if (st->ended > 0)
		r->ended = st->ended;
	if (st->np > r->np)
		jobrec_set_np(r, st->np);
	for (int i = 0; i < st->np && i < r->np; i++) {
		if (st->rank_exit[i] < 0)
			continue;
		r->ranks[i].exit_code = st->rank_exit[i];
		if (st->rank_ended[i] > 0 && r->started > 0 && st->rank_ended[i] >= r->started)
			r->ranks[i].duration = st->rank_ended[i] - r->started;
	}
	r->checked = now_wall();
}

int jobrec_dir_gone(const struct jobrec *r)
{
	const char *code = r->state_code;
	return code && reason_parse(code, strlen(code)) == REASON_DIR_GONE;
}

int jobrec_gone_error(const struct jobrec *r)
{
	if (r->state && strcmp(r->state, "lost"))
		error_set(PS_EXIT_REMOTE, "job '%s' (%s) has no directory on the remote any more: %s",
			  r->id, r->state, r->state_reason ? r->state_reason : "its directory is gone");
	else
		error_set(PS_EXIT_REMOTE, "job '%s' is lost: %s", r->id,
			  r->state_reason ? r->state_reason : "its directory is gone");
	if (r->results)
		error_hint("what was fetched before is in '%s'", r->results);
	return -1;
}

static int apply_cb(struct jobrec *r, void *ctx)
{
	jobrec_apply_state(r, ctx);
	return 0;
}

int jobrec_refresh(const char *id, const struct remote_job_state *st)
{
	return jobrec_update(id, apply_cb, (void *)st);
}

int jobrec_check(struct ssh_conn *c, const struct config *cfg, struct jobrec *r)
{
	struct remote_job_state st;
	char *dir = jobrec_remote_dir(r, cfg);
	int ret;

	ret = remote_job_read(c, dir, &st);
	free(dir);
	if (ret < 0)
		return ret;
	jobrec_apply_state(r, &st);
	if (jobrec_refresh(r->id, &st) < 0) {
		/* The table still shows the fresh state; the record stays as it was. */
		log_warn("%s", error_message());
		error_clear();
	}
	remote_job_state_release(&st);
	return 0;
}

struct conn_slot {
	char *key;		/* slot_key: where the job is reached */
	struct config cfg;
	struct ssh_conn *conn;
	char *why;
	int kind;
};

struct jobrec_conns {
	char *config_file;
	struct conn_slot *v;
	size_t n;
};

struct jobrec_conns *jobrec_conns_new(const char *config_file)
{
	struct jobrec_conns *cc = xcalloc(1, sizeof(*cc));
	cc->config_file = config_file ? xstrdup(config_file) : NULL;
	return cc;
}

/* Jobs with the same key are reached through the same connection. */
static char *slot_key(const struct jobrec *r)
{
	return xstrfmt("%s\n%s\n%s\n%d\n%s\n%s\n%s\n%s", r->remote ? r->remote : "",
		       r->host ? r->host : "", r->ssh_host ? r->ssh_host : "", r->ssh_port,
		       r->ssh_user ? r->ssh_user : "", r->identity ? r->identity : "",
		       r->known_hosts ? r->known_hosts : "", r->config_file ? r->config_file : "");
}

struct ssh_conn *jobrec_conns_get(struct jobrec_conns *cc, const struct jobrec *r,
				  const struct config **cfg, const char **why, int *kind)
{
	struct conn_slot *s = NULL;
	char *key = slot_key(r);

	for (size_t i = 0; i < cc->n && !s; i++)
		if (!strcmp(cc->v[i].key, key))
			s = &cc->v[i];
	if (!s) {
		cc->v = xrealloc(cc->v, (cc->n + 1) * sizeof(*cc->v));
		s = &cc->v[cc->n++];
		memset(s, 0, sizeof(*s));
		s->key = key;
		key = NULL;
		if (jobrec_connect(r, cc->config_file, &s->cfg, &s->conn) < 0) {
			s->conn = NULL;
			s->kind = error_kind();
			s->why = xstrdup(error_message());
			error_clear();
		}
	}
	free(key);
	*cfg = &s->cfg;
	*why = s->why;
	*kind = s->kind;
	return s->conn;
}

void jobrec_conns_free(struct jobrec_conns *cc)
{
	if (!cc)
		return;
	for (size_t i = 0; i < cc->n; i++) {
		ssh_conn_free(cc->v[i].conn);
		config_release(&cc->v[i].cfg);
		free(cc->v[i].key);
		free(cc->v[i].why);
	}
	free(cc->v);
	free(cc->config_file);
	free(cc);
}

