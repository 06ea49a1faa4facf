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

int jobrec_config(const struct jobrec *r, const char *config_file, struct config *cfg)
{
	if (config_load(cfg, config_file, NULL) < 0)
		return -1;
	if (r->remote) {
		const char **names = config_remote_names(cfg);
		int found = 0;
		for (size_t i = 0; names[i] && !found; i++)
			found = !strcmp(names[i], r->remote);
		free(names);
		if (!found) {
			error_set(PS_EXIT_USAGE,
				  "job '%s' ran on remote '%s', which is no longer configured in %s",
				  r->id, r->remote, cfg->file ? cfg->file : "any config file");
			return error_hint("add a [remote.%s] section back to reach the job%s%s%s",
					  r->remote, r->host_name ? " (it was on " : "",
					  r->host_name ? r->host_name : "",
					  r->host_name ? ")" : "");
		}
		config_release(cfg);
		if (config_load(cfg, config_file, r->remote) < 0)
			return -1;
	}
	return 0;
}

int jobrec_target(const struct jobrec *r, const char *config_file,
		  struct config *cfg, struct ssh_target *t)
{
	if (jobrec_config(r, config_file, cfg) < 0)
		return -1;
	if (r->host) {
		/* Identity and known_hosts still come from the configuration. */
		if (ssh_target_from_config(t, cfg) < 0)
			error_clear();
		return ssh_target_parse(t, r->host);
	}
	return ssh_target_from_config(t, cfg);
}

char *jobrec_remote_dir(const struct jobrec *r, const struct config *cfg)
{
	if (r->jobdir && *r->jobdir)
		return xstrdup(r->jobdir);
	return remote_job_dir(cfg ? cfg->remote.workdir : NULL, r->id);
}

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
			  r->id, r->state, r->state_reason);
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
	char *remote, *host;
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

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

struct ssh_conn *jobrec_conns_get(struct jobrec_conns *cc, const struct jobrec *r,
				  const struct config **cfg, const char **why, int *kind)
{
	struct conn_slot *s = NULL;

	for (size_t i = 0; i < cc->n && !s; i++)
		if (same(cc->v[i].remote, r->remote) && same(cc->v[i].host, r->host))
			s = &cc->v[i];
	if (!s) {
		cc->v = xrealloc(cc->v, (cc->n + 1) * sizeof(*cc->v));
		s = &cc->v[cc->n++];
		memset(s, 0, sizeof(*s));
		s->remote = r->remote ? xstrdup(r->remote) : NULL;
		s->host = r->host ? xstrdup(r->host) : NULL;
		if (jobrec_connect(r, cc->config_file, &s->cfg, &s->conn) < 0) {
			s->conn = NULL;
			s->kind = error_kind();
			s->why = xstrdup(error_message());
			error_clear();
		}
	}
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
		free(cc->v[i].remote);
		free(cc->v[i].host);
		free(cc->v[i].why);
	}
	free(cc->v);
	free(cc->config_file);
	free(cc);
}

