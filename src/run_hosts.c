/*
 * One job over several hosts ([remote] hosts, run --hosts), runtime none
 * or podman: every host reached first (a host that cannot be, or whose
 * key is unknown, refused before anything starts), a job directory of the
 * same path on every host but the first (with the cell unpacked, for
 * none), then the job submitted and followed on the first as any job, its
 * run.sh starting the ranks with mpirun -H over ssh; for podman, into a
 * container of the image on every host (docs/remote-job.md, "Several
 * hosts").
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "hosts.h"
#include "launch.h"
#include "log.h"
#include "push.h"
#include "remote_job.h"
#include "run.h"
#include "shquote.h"
#include "util.h"

struct run_hosts {
	struct host_list list;
	struct ssh_target *targets;	/* list.nr - 1: the hosts but the first */
	struct ssh_conn **conns;
	char *mpirun_list;		/* -H */
	char *master_addr;
	char **names;			/* the others' names in -H */
};

void run_hosts_free(struct run_hosts *h)
{
	if (!h)
		return;
	for (size_t i = 0; i + 1 < h->list.nr; i++) {
		ssh_conn_free(h->conns[i]);
		ssh_target_release(&h->targets[i]);
		free(h->names[i]);
	}
	free(h->targets);
	free(h->conns);
	free(h->names);
	free(h->mpirun_list);
	free(h->master_addr);
	hosts_release(&h->list);
	free(h);
}

/* The host's name as mpirun and the other hosts have it: no brackets. */
static char *bare_host(const char *host)
{
	size_t n = strlen(host);
	return host[0] == '[' ? xstrndup(host + 1, n - 2) : xstrdup(host);
}

/* Host entry e's target: the first's settings, e's host, user and port. */
static int other_target(struct ssh_target *t, const struct ssh_target *first,
			const struct host_entry *e)
{
	struct buf dest = BUF_INIT;
	memset(t, 0, sizeof(*t));
	t->user = first->user ? xstrdup(first->user) : NULL;
	t->port = first->port;
	t->identity = first->identity ? xstrdup(first->identity) : NULL;
	t->known_hosts = first->known_hosts ? xstrdup(first->known_hosts) : NULL;
	t->connect_timeout = first->connect_timeout;
	t->keepalive = first->keepalive;
	t->label = first->label ? xstrdup(first->label) : NULL;
	hosts_dest(e, &dest);
	int ret = ssh_target_parse(t, dest.ptr);
	buf_release(&dest);
	return ret;
}

/* The list parsed into r->hosts, the first host as r->target. */
static int parse_hosts(struct run *r)
{
	struct run_hosts *h = xcalloc(1, sizeof(*h));
	struct buf b = BUF_INIT;
	r->hosts = h;
	if (hosts_parse(&h->list, r->cfg.remote.hosts) < 0)
		return error_wrap("[remote] hosts");
	hosts_dest(&h->list.v[0], &b);
	int ret = ssh_target_parse(&r->target, b.ptr);
	buf_reset(&b);
	hosts_mpirun_list(&h->list, &b);
	h->mpirun_list = buf_detach(&b, NULL);
	h->master_addr = bare_host(h->list.v[0].host);
	size_t n = h->list.nr - 1;
	h->targets = xcalloc(n ? n : 1, sizeof(*h->targets));
	h->conns = xcalloc(n ? n : 1, sizeof(*h->conns));
	h->names = xcalloc(n ? n : 1, sizeof(*h->names));
	for (size_t i = 0; ret == 0 && i < n; i++) {
		ret = other_target(&h->targets[i], &r->target, &h->list.v[i + 1]);
		h->names[i] = bare_host(h->list.v[i + 1].host);
	}
	buf_release(&b);
	return ret;
}

int run_hosts_check(struct run *r)
{
	if (!r->cfg.remote.hosts || r->opt.host)
		return 0;
	/* docker would need each host's engine reached as run does one
	 * (through its socket); podman needs none. */
	if (r->cfg.remote.runtime == RUNTIME_DOCKER) {
		error_set(PS_EXIT_USAGE, "runtime '%s' cannot run over several hosts yet",
			  runtime_name(r->cfg.remote.runtime));
		return error_hint("use runtime = podman (the image on every host) or none (the "
				  "hosts' own python and Open MPI) with [remote] hosts");
	}
	if (r->cfg.remote.scheduler != SCHEDULER_NONE) {
		error_set(PS_EXIT_USAGE, "[remote] hosts cannot go with scheduler '%s'", "slurm");
		return error_hint("Slurm chooses the nodes: leave hosts unset ([slurm] nodes)");
	}
	if (parse_hosts(r) < 0)
		return -1;
	/* -n left to its default: the slots of every host, when all say. */
	const char *origin = config_origin(&r->cfg, "job.np");
	int slots = hosts_slots(&r->hosts->list);
	if (slots > 0 && origin && !strcmp(origin, "default"))
		r->cfg.job.np = slots;
	return 0;
}

void run_hosts_spec(const struct run *r, struct launch_spec *s)
{
	const struct run_hosts *h = r->hosts;
	if (!h || h->list.nr < 2)
		return;
	s->hosts = h->mpirun_list;
	s->master_addr = h->master_addr;
	s->other_hosts = (const char *const *)h->names;
	s->nother_hosts = h->list.nr - 1;
}

/* A host refused before anything started: named, exit 4. -1. */
static int refused(const struct host_entry *e)
{
	struct buf b = BUF_INIT;
	hosts_dest(e, &b);
	error_wrap("host '%s' of the job's hosts, nothing started", b.ptr);
	buf_release(&b);
	return -1;
}

/*
 * A session's directory is its owner's alone on every host, as jobctl.sh
 * makes it on the first: the forwarded ranks.sock is in it there.
 */
static void session_dir_mode(const struct run *r, struct buf *cmd)
{
	if (!r->opt.session)
		return;
	buf_addstr(cmd, " && chmod 700 ");
	shquote_path(cmd, r->dir);
}

/*
 * The job directory on another host, at the same path as on the first,
 * with the cell (and project) unpacked as run.sh does there: Open MPI
 * starts that host's ranks in the same directory. For podman the cell is
 * in the image: logs/ and results/ alone, which its container mounts.
 */
static int place_cell(struct run *r, struct ssh_conn *c)
{
	const struct context *ctx = &r->ctx;
	struct buf cmd = BUF_INIT;
	int ret;

	if (r->cfg.remote.runtime != RUNTIME_NONE) {
		buf_addstr(&cmd, "umask 022 && mkdir -p ");
		shquote_path(&cmd, r->dir);
		buf_addstr(&cmd, " && cd ");
		shquote_path(&cmd, r->dir);
		buf_addstr(&cmd, " && mkdir -p logs results");
		ret = ssh_conn_run(c, cmd.ptr, "mkdir", NULL);
		buf_release(&cmd);
		return ret < 0 ? -1 : 0;
	}
	if (remote_job_put_layer(c, r->cfg.remote.workdir, ctx->cell.digest, ctx->cell.path) < 0 ||
	    (ctx->project.size > 0 &&
	     remote_job_put_layer(c, r->cfg.remote.workdir, ctx->project.digest,
				  ctx->project.path) < 0)) {
		buf_release(&cmd);
		return -1;
	}
	buf_addstr(&cmd, "umask 022 && mkdir -p ");
	shquote_path(&cmd, r->dir);
	session_dir_mode(r, &cmd);
	buf_addstr(&cmd, " && cd ");
	shquote_path(&cmd, r->dir);
	buf_addf(&cmd, " && mkdir -p logs results && tar -xzf ../../layers/%s.tar.gz "
		 "--strip-components=1", ctx->cell.digest + 7);
	if (ctx->project.size > 0)
		buf_addf(&cmd, " && tar -xzf ../../layers/%s.tar.gz --strip-components=1",
			 ctx->project.digest + 7);
	ret = ssh_conn_run(c, cmd.ptr, "tar", NULL);
	buf_release(&cmd);
	return ret < 0 ? -1 : 0;
}

int run_hosts_place(struct run *r)
{
	struct run_hosts *h = r->hosts;
	int flags = r->opt.accept_new ? SSH_ACCEPT_NEW_HOSTKEY : 0;

	/* The image in the registry first, as run_in_turn does: every host
	 * pulls it (run.sh, in parallel). */
	if (r->cfg.remote.runtime != RUNTIME_NONE) {
		if (push_image_as(&r->cfg, &r->ctx, NULL, r->copts.cell, &r->img) < 0)
			return -1;
		r->have_img = 1;
		run_stage("image pushed");
	}
	/* Every host first: nothing starts unless all can be reached. */
	if (run_open_conn(r) < 0)
		return refused(&h->list.v[0]);
	for (size_t i = 0; i + 1 < h->list.nr; i++) {
		int rc = ssh_conn_open(&h->conns[i], &h->targets[i], flags);
		if (rc == SSH_R_HOSTKEY_UNKNOWN && !error_hint_text())
			error_hint("check the fingerprint, then run again with --accept-new-host-key "
				   "(or 'pystrib doctor --trust-host')");
		if (rc < 0)
			return refused(&h->list.v[i + 1]);
	}
	run_stage("every host connected");
	r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	for (size_t i = 0; i + 1 < h->list.nr; i++) {
		if (place_cell(r, h->conns[i]) < 0)
			return error_wrap("host '%s': cannot place the cell",
					  ssh_conn_name(h->conns[i]));
	}
	run_stage("the cell on every host");
	log_info("%s over %zu hosts: mpirun -H %s", r->opt.session ? "session" : "job",
		 h->list.nr, h->mpirun_list);
	return 0;
}

int run_on_hosts(struct run *r)
{
	if (run_hosts_place(r) < 0)
		return error_report();
	return run_submit_and_follow(r);
}
