#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "cli.h"
#include "error.h"
#include "gpucheck.h"
#include "jobfmt.h"
#include "jobstate.h"
#include "jobremote.h"
#include "launch.h"
#include "log.h"
#include "outcome.h"
#include "ref.h"
#include "remote_job.h"
#include "results.h"
#include "run.h"
#include "session.h"
#include "slurm.h"
#include "util.h"

/* Past this, runtime none's cell layer is uploaded on its own. */
#define CELL_INLINE_MAX (64u << 20)

/* When the command started, for the -v timings. */
static double t_start;

void run_stage(const char *what)
{
	log_info("timing: %s at %.3f s", what, now_monotonic() - t_start);
}

void run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	t_start = now_monotonic();
	buf_init(&r->start, 0);
	buf_init(&r->start_in, 0);
}

int run_load_config(struct run *r, const struct run_flag *flags)
{
	if (config_load(&r->cfg, cli.config_file, r->opt.remote) < 0)
		return -1;
	for (const struct run_flag *f = flags; f->key; f++)
		if (f->value && config_set(&r->cfg, f->key, f->value, f->origin) < 0)
			return -1;
	return 0;
}

int run_add_env(struct run *r, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || !launch_env_name_ok(kv, (size_t)(eq - kv)))
		return error_set(PS_EXIT_USAGE, "invalid --env '%s'", kv),
		       error_hint("write --env KEY=VALUE, KEY made of letters, digits and _");
	r->opt.env = xrealloc(r->opt.env, (r->opt.nenv + 1) * sizeof(*r->opt.env));
	r->opt.env[r->opt.nenv++] = kv;
	return 0;
}

void run_release(struct run *r)
{
	results_unpack_abort(r->unpack);
	if (r->start_in.len)
		secret_wipe(r->start_in.ptr, r->start_in.len);
	buf_release(&r->start);
	buf_release(&r->start_in);
	if (r->have_follow)
		follow_release(&r->f);
	ssh_conn_free(r->conn);
	ssh_target_release(&r->target);
	if (r->have_img)
		pushed_image_release(&r->img);
	context_release(&r->ctx);
	context_options_release(&r->copts);
	config_release(&r->cfg);
	free(r->opt.env);
	free(r->dir);
	free(r->results);
	free(r->slurm_id);
	run_hosts_free(r->hosts);
}

char *run_job_json(const struct run *r, const char *image)
{
	json_t *args = json_array();
	for (char **a = r->opt.args; a && *a; a++)
		json_array_append_new(args, json_string(*a));
	json_t *j = json_pack("{s:s,s:i,s:s,s:s?,s:s?,s:s?,s:o,s:f,s:s?,s:s?,s:s?}",
			      "id", r->id, "np", r->cfg.job.np,
			      "runtime", runtime_name(r->cfg.remote.runtime),
			      "image", image, "digest", r->have_img ? r->img.digest : NULL,
			      "cell", r->copts.cell, "argv", args, "created", r->created,
			      "remote", r->opt.remote, "revision", r->ctx.revision,
			      "gpus", r->cfg.remote.gpus);
	/* jobctl.sh start makes a session's directory 0700 on seeing this. */
	if (j && r->opt.session)
		json_object_set_new(j, "kind", json_string("session"));
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s ? s : xstrdup("{}");
}

void run_base_spec(const struct run *r, struct launch_spec *s)
{
	const struct config *cfg = &r->cfg;
	memset(s, 0, sizeof(*s));
	s->id = r->id;
	s->runtime = cfg->remote.runtime;
	s->np = cfg->job.np;
	s->timeout = cfg->job.timeout;
	s->env = r->opt.env;
	s->nenv = r->opt.nenv;
	s->gpus = cfg->remote.gpus;
	s->mpirun_args = cfg->remote.mpirun_args;
	s->args = (const char *const *)r->opt.args;
	s->session = r->opt.session;
	s->idle_timeout = r->opt.idle_timeout >= 0 ? r->opt.idle_timeout : r->cfg.session.idle_timeout;
	s->srun = cfg->remote.scheduler == SCHEDULER_SLURM;
	run_hosts_spec(r, s);
}

/*
 * Scheduler slurm: the job directory under [slurm] shared_dir (as the
 * workdir, so that runtime none's layers are there too). Every runtime
 * runs under Slurm: docker and podman as a container per task on the
 * nodes (src/remote/run.sh, docs/remote-job.md).
 */
static int run_slurm_check(struct run *r)
{
	if (r->cfg.remote.scheduler != SCHEDULER_SLURM)
		return 0;
	if (r->cfg.slurm.shared_dir)
		r->cfg.remote.workdir = r->cfg.slurm.shared_dir;
	return 0;
}

/* Submits the job with sbatch (slurm.h): its id in r->slurm_id. */
static int run_slurm_submit(struct run *r, const char *json, const char *script)
{
	return slurm_submit(r->conn, &r->cfg.slurm, r->id, r->cfg.job.np, r->cfg.job.timeout,
			    r->dir, json, script, &r->slurm_id);
}

/* runtime none: the layers go over SSH, a small cell layer with the start. */
static int spec_layers(struct run *r, struct launch_spec *s, int *inline_cell,
		       char **cell_layer, char **project_layer)
{
	const struct config *cfg = &r->cfg;

	*inline_cell = !r->opt.detach && r->ctx.cell.size <= CELL_INLINE_MAX;
	if (!*inline_cell && remote_job_put_layer(r->conn, cfg->remote.workdir, r->ctx.cell.digest,
						  r->ctx.cell.path) < 0)
		return -1;
	*cell_layer = xstrfmt("../../layers/%s.tar.gz", r->ctx.cell.digest + 7);
	if (r->ctx.project.size > 0) {
		if (remote_job_put_layer(r->conn, cfg->remote.workdir, r->ctx.project.digest,
					 r->ctx.project.path) < 0)
			return -1;
		*project_layer = xstrfmt("../../layers/%s.tar.gz", r->ctx.project.digest + 7);
	}
	s->cell_layer = *cell_layer;
	s->project_layer = *project_layer;
	s->python = cfg->remote.python;
	s->setup = cfg->remote.setup;
	s->workdir = r->ctx.workdir;
	s->image_env = (const char *const *)r->ctx.env;
	s->nimage_env = r->ctx.nenv;
	return 0;
}

int run_submit(struct run *r)
{
	struct launch_spec s;
	struct buf script = BUF_INIT;
	struct credentials cred = { 0 };
	char *image = NULL, *json = NULL, *login = NULL;
	char *cell_layer = NULL, *project_layer = NULL;
	const struct config *cfg = &r->cfg;
	int ret = -1, inline_cell = 0, have_cred = 0;

	run_base_spec(r, &s);
	if (s.runtime == RUNTIME_NONE) {
		if (spec_layers(r, &s, &inline_cell, &cell_layer, &project_layer) < 0)
			goto out;
	} else {
		image = ref_pull_reference(r->img.pinned, r->img.repository, r->img.digest,
					   cfg->remote.pull_registry);
		s.image = image;
		s.tls_verify_off = cfg->registry.insecure ||
			(cfg->registry.url && !strncmp(cfg->registry.url, "http://", 7));
		s.image_present = r->pulled;
		if (!r->pulled && (have_cred = run_credentials(r, &cred)) < 0)
			goto out;
		if (have_cred) {
			login = ref_registry_part(image);
			s.login_registry = login;
			s.login_user = cred.username;
		}
	}
	json = run_job_json(r, r->have_img ? r->img.pinned : NULL);
	if (launch_script(&s, &script) < 0)
		goto out;
	if (inline_cell && (remote_job_layer_from_stdin(&r->start, cfg->remote.workdir,
							r->ctx.cell.digest, r->ctx.cell.size,
							r->id) < 0 ||
			    buf_read_file(&r->start_in, r->ctx.cell.path) < 0))
		goto out;
	if (!s.srun && !r->opt.detach && remote_job_start_command(&r->start, r->dir, json, script.ptr) == 0) {
		/* Started with the follower, in the same round trip. */
		if (have_cred)
			buf_addf(&r->start_in, "%s\n", cred.password);
		ret = 0;
		goto out;
	}
	buf_reset(&r->start);
	buf_reset(&r->start_in);
	if (inline_cell && remote_job_put_layer(r->conn, cfg->remote.workdir, r->ctx.cell.digest,
						r->ctx.cell.path) < 0)
		goto out;
	if (r->deferred) {
		error_set(PS_EXIT_USAGE, "the job's arguments and environment are too large "
			  "to pass on a command line");
		error_hint("pass large values in a file (--input)");
		goto out;
	}
	if (s.srun)
		ret = run_slurm_submit(r, json, script.ptr);
	else
		ret = remote_job_submit(r->conn, r->dir, json, script.ptr,
					have_cred ? cred.password : NULL);
out:
	credentials_release(&cred);
	free(login);
	free(image);
	free(json);
	free(cell_layer);
	free(project_layer);
	buf_release(&script);
	return ret < 0 ? -1 : 0;
}

int run_credentials(const struct run *r, struct credentials *out)
{
	char *registry = ref_registry_part(r->img.pinned);
	int ret = auth_find_credentials(&r->cfg.registry, registry, out);
	free(registry);
	if (ret == 0 && !out->password) {
		/* An identity token is for the registry's token service, not a login. */
		credentials_release(out);
		return 0;
	}
	return ret < 0 ? -1 : ret == 0;
}

static void save_record(struct run *r)
{
	struct jobrec rec;
	jobrec_init(&rec);
	jobrec_set(&rec.id, r->id);
	jobrec_set(&rec.remote, r->opt.remote);
	jobrec_set(&rec.host, r->opt.host);
	jobrec_set(&rec.host_name, ssh_conn_name(r->conn));
	jobrec_set(&rec.jobdir, r->dir);
	jobrec_set_target(&rec, &r->target, r->cfg.file, r->cfg.remote.workdir);
	jobrec_set(&rec.runtime, runtime_name(r->cfg.remote.runtime));
	jobrec_set(&rec.kind, r->opt.session ? "session" : NULL);
	jobrec_set(&rec.name, r->opt.name);
	if (r->have_img) {
		jobrec_set(&rec.image, r->img.reference);
		jobrec_set(&rec.digest, r->img.digest);
	}
	jobrec_set(&rec.revision, r->ctx.revision);
	jobrec_set(&rec.cell, r->copts.cell);
	jobrec_set(&rec.results, r->results);
	jobrec_set(&rec.state, "submitted");
	jobrec_set(&rec.slurm_id, r->slurm_id);
	jobrec_set_np(&rec, r->cfg.job.np);
	rec.created = r->created;
	if (jobrec_save(&rec) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	jobrec_release(&rec);
}

void run_announce(struct run *r)
{
	if (r->announced)
		return;
	r->announced = 1;
	save_record(r);
	event_emit("job", "{s:s,s:s?,s:s,s:i,s:s?,s:s,s:s,s:s?}", "id", r->id, "remote",
		   r->opt.remote, "host", ssh_conn_name(r->conn), "np", r->cfg.job.np,
		   "image", r->have_img ? r->img.pinned : NULL,
		   "runtime", runtime_name(r->cfg.remote.runtime), "dir", r->dir,
		   "kind", r->opt.session ? "session" : NULL);
	if (!log_json && !r->opt.detach)
		fprintf(stderr, "pystrib: job %s: %d rank%s on '%s' (%s%s%s)\n", r->id, r->cfg.job.np,
			r->cfg.job.np == 1 ? "" : "s", ssh_conn_name(r->conn),
			runtime_name(r->cfg.remote.runtime), r->slurm_id ? ", Slurm job " : "",
			r->slurm_id ? r->slurm_id : "");
}

/* Stops the job after Ctrl-C or a timeout; the state it ended in, or NULL. */
static char *stop_job(struct run *r, const char *final)
{
	char *state = NULL;
	interrupt_clear();
	error_clear();
	fprintf(stderr, "pystrib: stopping job %s on '%s'\n", r->id, ssh_conn_name(r->conn));
	/* Nothing heard from the job yet: its start may still be on the way. */
	int (*cancel)(struct ssh_conn *, const char *, const char *, char **) =
		!r->have_follow || !r->f.state ? remote_job_cancel_unstarted : remote_job_cancel;
	if (cancel(r->conn, r->dir, final, &state) < 0) {
		if (ssh_conn_reconnect(r->conn) == 0)
			cancel(r->conn, r->dir, final, &state);
	}
	if (!state) {
		log_warn("could not stop job %s: %s", r->id, error_message());
		error_clear();
	}
	return state;
}

/*
 * The results and logs, fetched on their own. patient: through dropped
 * connections for up to [remote] reconnect_timeout, as a follower does;
 * else (the user stopped the job and wants out) one reconnection at most.
 */
static int fetch(struct run *r, int patient)
{
	struct results_stats st;
	int ret;
	if (patient) {
		ret = results_fetch_retry(r->conn, r->dir, r->results, NULL, &st,
					  r->cfg.remote.reconnect_timeout);
	} else {
		ret = results_fetch(r->conn, r->dir, r->results, NULL, &st);
		if (ret == SSH_R_DROPPED) {
			error_clear();
			if (ssh_conn_reconnect(r->conn) == 0)
				ret = results_fetch(r->conn, r->dir, r->results, NULL, &st);
		}
	}
	if (ret < 0) {
		log_warn("could not fetch the results: %s", error_message());
		error_clear();
		return -1;
	}
	return 0;
}

/* The results tar, as the follower sends it once the job ended. */
static int on_tar(void *ctx, const void *data, size_t len)
{
	struct run *r = ctx;
	if (!data) {
		/* The job's stdin (a registry password) went long ago: nothing
		 * secret stays beside the untrusted bytes from here on. */
		if (r->start_in.len)
			secret_wipe(r->start_in.ptr, r->start_in.len);
		results_unpack_abort(r->unpack);
		r->unpack = NULL;
		return results_unpack_begin(&r->unpack, r->results, NULL);
	}
	return results_unpack_write(r->unpack, data, len);
}

/* The results: as the follower brought them, else fetched now. 0 or -1. */
static int results_in(struct run *r)
{
	struct results_unpack *u = r->unpack;
	r->unpack = NULL;
	if (u && r->f.tar_done) {
		if (results_unpack_finish(u, NULL) == 0) {
			event_emit("results", "{s:s}", "path", r->results);
			return 0;
		}
		log_warn("could not unpack the results: %s", error_message());
		error_clear();
	} else {
		results_unpack_abort(u);
	}
	/* A directory that is gone has nothing to fetch. */
	return r->f.code == REASON_DIR_GONE ? -1 : fetch(r, 1);
}

static void on_state(void *ctx, const char *state)
{
	run_announce(ctx);
	if (log_verbosity > 0) {
		char *what = xstrfmt("job state '%s' seen", state);
		run_stage(what);
		free(what);
	}
	/* A final state is said after the ranks' last output (run_after_follow):
	 * the follower hears of it before their last bytes. */
	if (!log_json && (!strcmp(state, "pulling") || (log_verbosity > 0 && !job_state_final(state))))
		fprintf(stderr, "pystrib: %s\n", !strcmp(state, "pulling") ? "pulling the image" : state);
}

int run_open_conn(struct run *r)
{
	int rc = ssh_conn_open(&r->conn, &r->target,
			       r->opt.accept_new ? SSH_ACCEPT_NEW_HOSTKEY : 0);
	if (rc < 0) {
		if (rc == SSH_R_HOSTKEY_UNKNOWN && !error_hint_text())
			error_hint("check the fingerprint, then run again with --accept-new-host-key "
				   "(or 'pystrib doctor --trust-host')");
		return -1;
	}
	run_stage("connected");
	/* Nothing has started on the host yet: a job that cannot get its GPUs never does. */
	if (r->cfg.remote.gpus && host_gpu_check(r->conn, &r->cfg, NULL) < 0)
		return -1;
	return 0;
}

void run_init_follow(struct run *r)
{
	follow_init(&r->f, r->dir, r->cfg.job.np);
	r->have_follow = 1;
	r->f.reconnect_timeout = r->cfg.remote.reconnect_timeout;
	r->f.on_state = on_state;
	r->f.on_tar = on_tar;
	r->f.ctx = r;
	/* The job's own watchdog stops it at --timeout; this is for a host that
	 * cannot (not while the push may still run: it would count too). */
	if (r->cfg.job.timeout > 0 && !r->deferred && !r->slurm_id)
		r->f.deadline = now_monotonic() + r->cfg.job.timeout + 30;
}

static int report(struct run *r, const char *state, int fetched)
{
	char tag[256];
	struct outcome o = {
		.id = r->id, .f = &r->f, .state = state,
		.image = r->have_img ? r->img.pinned : NULL,
		.tag = r->have_img ? jobrec_image_tag(tag, sizeof(tag), r->img.reference) : NULL,
		.results = fetched ? r->results : NULL,
	};
	return outcome_report(&o);
}

/* Ctrl-C or the deadline: the job stopped, what there is fetched, told. */
static int stopped(struct run *r, int rc)
{
	const char *want = rc == SSH_R_INTERRUPTED ? "cancelled" : "timeout";
	results_unpack_abort(r->unpack);
	r->unpack = NULL;
	run_announce(r);
	char *st = stop_job(r, want);
	int fetched = fetch(r, 0) == 0;
	if (!st && !log_json)
		fprintf(stderr, "pystrib: job %s may still run\n", r->id);
	int code = report(r, st ? st : want, fetched);
	free(st);
	return code;
}

int run_after_follow(struct run *r, int rc)
{
	run_stage("job ended");
	if (log_verbosity > 0 && !log_json && r->f.state && job_state_final(r->f.state))
		fprintf(stderr, "pystrib: %s\n", r->f.state);
	if (log_verbosity > 0 && r->f.started > 0 && r->f.ended > 0)
		log_info("timing: on the host: %.3f s to launch (pull), %.3f s running, %.3f s in all",
			 r->f.launched > 0 ? r->f.launched - r->f.started : 0.0,
			 r->f.launched > 0 ? r->f.ended - r->f.launched : 0.0,
			 r->f.ended - r->f.started);
	if (rc < 0 && rc != SSH_R_INTERRUPTED && rc != SSH_R_TIMEOUT && !r->f.state &&
	    (r->start.len || r->deferred)) {
		/* The job never started: nothing to follow or stop. */
		if (r->announced)
			jobrec_remove(r->id);
		return error_report();
	}
	if (rc == SSH_R_INTERRUPTED || rc == SSH_R_TIMEOUT)
		return stopped(r, rc);
	if (rc < 0) {
		error_hint("the job goes on running there: 'pystrib attach %s' follows it again",
			   r->id);
		return error_report();
	}
	rc = results_in(r);
	run_stage("results unpacked");
	return report(r, NULL, rc == 0);
}

int run_submit_and_follow(struct run *r)
{
	int rc;

	if (!r->dir)
		r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	if (run_submit(r) < 0) {
		if (error_kind() == PS_EXIT_INTERRUPTED) {
			char *st = stop_job(r, "cancelled");
			free(st);
			error_set(PS_EXIT_INTERRUPTED, "interrupted");
		}
		return error_report();
	}
	run_announce(r);
	if (r->opt.detach) {
		if (!log_json)
			printf("%s\n", r->id);
		return 0;
	}
	if (!r->have_follow)
		run_init_follow(r);
	if (r->start.len) {
		r->f.start_cmd = r->start.ptr;
		r->f.stdin_data = r->start_in.len ? r->start_in.ptr : NULL;
		r->f.stdin_len = r->start_in.len;
	}
	rc = follow_job(r->conn, &r->f);
	if (r->start_in.len)
		secret_wipe(r->start_in.ptr, r->start_in.len);
	return run_after_follow(r, rc);
}

/*
 * Push (docker, podman), connect, submit, follow: one after the other. For
 * runtime none (its layers go up over the SSH connection) and --detach.
 */
static int run_in_turn(struct run *r)
{
	if (r->cfg.remote.runtime != RUNTIME_NONE) {
		if (push_image_as(&r->cfg, &r->ctx, NULL, r->copts.cell, &r->img) < 0)
			return error_report();
		r->have_img = 1;
		run_stage("image pushed");
	}
	if (run_open_conn(r) < 0)
		return error_report();
	return run_submit_and_follow(r);
}

/* Where the results come back (absolute), and never into the image. */
static int prepare(struct run *r, const char **exclude)
{
	const char *root = r->cfg.job.results ? r->cfg.job.results : "./pystrib-results";
	struct jobrec rec;

	jobrec_init(&rec);
	jobrec_set(&rec.id, r->id);
	r->results = jobrec_results_dir(&rec, &r->cfg, r->opt.results);
	jobrec_release(&rec);
	*exclude = r->opt.results ? r->opt.results : root;
	r->copts.exclude = exclude;
	r->copts.nexclude = 1;
	r->copts.base = r->cfg.image.base;
	r->created = now_wall();

	/* Where it runs: checked before building anything. */
	if (ssh_target_from_config(&r->target, &r->cfg) < 0) {
		if (!r->opt.host && !r->cfg.remote.hosts)
			return -1;
		error_clear();
	}
	if (r->opt.host && ssh_target_parse(&r->target, r->opt.host) < 0)
		return -1;
	return 0;
}

/* The cell's context, once the job has an id and its settings are checked. 0 or -1. */
static int build_context(struct run *r)
{
	char *cache = context_cache_dir();
	int ret = context_build(&r->ctx, &r->copts, cache);
	free(cache);
	if (ret == 0)
		run_stage("context built");
	return ret;
}

int run_job(struct run *r)
{
	const char *exclude[1];

	if (jobrec_new_id(r->id) < 0 || prepare(r, exclude) < 0 || run_slurm_check(r) < 0 ||
	    run_hosts_check(r) < 0 || build_context(r) < 0)
		return error_report();
	if (r->hosts)
		return run_on_hosts(r);
	if (r->cfg.remote.scheduler == SCHEDULER_SLURM)
		return run_in_turn(r);
	if (run_engine_eligible(r))
		return run_through_engine(r);
	if (r->cfg.remote.runtime != RUNTIME_NONE && !r->opt.detach)
		return run_overlapped(r);
	return run_in_turn(r);
}

/* What a session cannot do yet. 0, or -1 with the error set. */
static int session_check(const struct run *r)
{
	if (r->cfg.remote.scheduler == SCHEDULER_SLURM && r->cfg.remote.runtime != RUNTIME_NONE) {
		error_set(PS_EXIT_USAGE, "sessions under Slurm cannot run runtime '%s' yet",
			  runtime_name(r->cfg.remote.runtime));
		return error_hint("use runtime = none for a session under Slurm (the nodes' own "
				  "python and MPI), or start it on a host of its own with "
				  "scheduler = none");
	}
	if (r->cfg.remote.hosts && !r->opt.host && r->cfg.remote.runtime != RUNTIME_NONE) {
		error_set(PS_EXIT_USAGE, "sessions cannot span several hosts with runtime '%s' yet",
			  runtime_name(r->cfg.remote.runtime));
		return error_hint("use runtime = none with [remote] hosts, or start the session on "
				  "one of them (--host HOST)");
	}
	return 0;
}

int run_session(struct run *r)
{
	const char *exclude[1];

	r->opt.session = 1;
	r->copts.session = 1;
	/* Submitted on its own (no follower); session_wait_started waits. */
	r->opt.detach = 1;
	if (jobrec_new_id(r->id) < 0 || prepare(r, exclude) < 0 || session_check(r) < 0 ||
	    run_hosts_check(r) < 0 || run_slurm_check(r) < 0 || build_context(r) < 0)
		return error_report();
	/* As a detached job: the push (and docker's pull) beside the login,
	 * then the submit; then wait for the hub. */
	if (r->cfg.remote.runtime != RUNTIME_NONE) {
		int ret = run_push_beside_login(r, 1);
		if (ret != 0)
			return ret;
	} else if (r->hosts ? run_hosts_place(r) < 0 : run_open_conn(r) < 0) {
		/* Over several hosts: every host connected, the session's files on each. */
		return error_report();
	}
	if (!r->dir)
		r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	if (run_submit(r) < 0)
		return error_report();
	run_announce(r);
	return session_wait_started(r);
}
