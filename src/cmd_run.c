#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "commands.h"
#include "config.h"
#include "context.h"
#include "engine.h"
#include "error.h"
#include "follow.h"
#include "jobrec.h"
#include "launch.h"
#include "log.h"
#include "push.h"
#include "remote_job.h"
#include "results.h"
#include "ssh.h"
#include "util.h"

const char cmd_run_help[] =
	"usage: pystrib run FILE [-n N] [--remote NAME | --host [USER@]HOST[:PORT]]\n"
	"                   [--runtime docker|podman|none] [--gpus SPEC] [--timeout SECONDS]\n"
	"                   [--results DIR] [--env KEY=VALUE]... [--detach]\n"
	"                   [--accept-new-host-key] [--project DIR | --no-project]\n"
	"                   [--input PATH]... [-- ARGS...]\n"
	"\n"
	"Runs the Python file FILE (a saved notebook cell) as N MPI ranks on the\n"
	"remote host: builds the cell's image layers (the project, the cell), pushes\n"
	"only what the registry lacks, starts the job there detached over SSH (it\n"
	"survives a dropped connection), shows each rank's output as it arrives,\n"
	"prefixed with the rank ('[0] ...'; stdout to stdout, stderr to stderr), then\n"
	"fetches the job's results/ and logs and prints a summary per rank. ARGS reach\n"
	"the cell as sys.argv[1:]; the cell sees rank and world_size as globals, and\n"
	"RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT and PYSTRIB_RESULTS\n"
	"(write files there to get them back) in its environment.\n"
	"\n"
	"Defaults come from the configuration ([job], [remote]; see 'pystrib config\n"
	"show'). If the connection drops, pystrib reconnects for up to [remote]\n"
	"reconnect_timeout seconds and goes on where it was.\n"
	"\n"
	"options:\n"
	"  -n, --np N            number of ranks (default: [job] np)\n"
	"  -r, --remote NAME     run on the host of [remote.NAME]\n"
	"      --host DEST       run on [USER@]HOST[:PORT] (a ~/.ssh/config alias works)\n"
	"      --runtime RT      docker, podman, or none (the host's own mpirun and\n"
	"                        python, with the cell's files unpacked in the job dir)\n"
	"      --gpus SPEC       all, a count (2) or device indexes (0,1), dealt over\n"
	"                        the local ranks as CUDA_VISIBLE_DEVICES\n"
	"      --timeout SECONDS stop the job (container and every process) after\n"
	"                        SECONDS, counted from its start on the host; exit 5\n"
	"      --results DIR     where results/ and logs/ come back (default:\n"
	"                        [job] results/<job id>, ./pystrib-results/<job id>)\n"
	"  -e, --env KEY=VALUE   set a variable for every rank (repeatable)\n"
	"  -d, --detach          submit, print the job id and return ('pystrib attach'\n"
	"                        follows it later)\n"
	"      --accept-new-host-key  trust and record the key of a host not yet in\n"
	"                        known_hosts (a CHANGED key is always refused)\n"
	CONTEXT_OPTIONS_HELP
	"  -h, --help            show this help\n"
	"\n"
	"Ctrl-C stops the remote job and exits 130. With the global --json, stdout\n"
	"carries one event per line (job, status, output, rank_exit, results, done).\n"
	"\n"
	"exit codes:\n"
	"  0    every rank exited 0\n"
	"  1    a rank failed (its stderr's last lines are shown)\n"
	"  2    usage or configuration error\n"
	"  3    registry error\n"
	"  4    SSH or remote-host error (unreachable, host key, login, no runtime)\n"
	"  5    the job ran past --timeout and was stopped\n"
	"  130  interrupted (the remote job was stopped)\n"
	"\n"
	"examples:\n"
	"  pystrib run train.py -n 4 --gpus all\n"
	"  pystrib run sweep.py -n 2 --env LR=0.01 -- --epochs 3\n"
	"  pystrib run cell.py --host me@gpu1 --runtime none --timeout 600\n"
	"  pystrib run long.py -n 8 --detach && pystrib attach last\n";

enum {
	OPT_HOST = 0x400, OPT_RUNTIME, OPT_GPUS, OPT_TIMEOUT, OPT_RESULTS, OPT_ACCEPT,
};

struct run {
	struct config cfg;
	struct context_options copts;
	struct context ctx;
	struct pushed_image img;
	int have_img;
	struct ssh_target target;
	struct ssh_conn *conn;
	const char *remote, *host, *results_flag;
	const char **env;
	size_t nenv;
	char **args;
	int accept_new, detach;
	char id[JOBREC_ID_SIZE];
	char *dir;
	char *results;
	double created;
	struct follow f;
	int have_follow;
	/*
	 * Not detached: the job is started by the follower's own round trip
	 * (start, follow, results in one remote command). start is that
	 * command's first part, start_in its stdin (runtime none's cell
	 * layer, or the registry password: wiped once sent).
	 */
	struct buf start, start_in;
	struct results_unpack *unpack;
	int deferred;		/* the push runs beside the SSH login (run_overlapped) */
	int announced;		/* the job record, event and line are out */
	int pulled;		/* pull_early put the image on the host */
	atomic_int early_stop;	/* the job is over: pull_early can stop */
};

/* Past this, runtime none's cell layer is uploaded on its own. */
#define CELL_INLINE_MAX (64u << 20)

/* With -v, when each stage ended, from the start of the command. */
static double t_start;

static void stage(const char *what)
{
	log_info("timing: %s at %.3f s", what, now_monotonic() - t_start);
}

/* The registry password, as [registry] says where it is; NULL if none. */
static char *registry_password(const struct registry_config *rc)
{
	if (rc->password_env) {
		const char *v = getenv(rc->password_env);
		return v && *v ? xstrdup(v) : NULL;
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

static void wipe(char *s)
{
	if (s) {
		memset(s, 0, strlen(s));
		free(s);
	}
}

/* "REGISTRY/REPO@sha256:..." with the registry part replaced by pull_registry. */
static char *pull_reference(const struct pushed_image *img, const char *pull_registry)
{
	if (!pull_registry || !*pull_registry)
		return xstrdup(img->pinned);
	const char *p = strstr(pull_registry, "://");
	p = p ? p + 3 : pull_registry;
	size_t n = strlen(p);
	while (n && p[n - 1] == '/')
		n--;
	return xstrfmt("%.*s/%s@%s", (int)n, p, img->repository, img->digest);
}

static char *registry_host(const char *ref)
{
	return xstrndup(ref, strcspn(ref, "/"));
}

static char *job_json(struct run *r, const char *image, const char *cell)
{
	json_t *args = json_array();
	for (char **a = r->args; a && *a; a++)
		json_array_append_new(args, json_string(*a));
	json_t *j = json_pack("{s:s,s:i,s:s,s:s?,s:s?,s:s,s:o,s:f,s:s?,s:s?,s:s?}",
			      "id", r->id, "np", r->cfg.job.np,
			      "runtime", runtime_name(r->cfg.remote.runtime),
			      "image", image, "digest", r->have_img ? r->img.digest : NULL,
			      "cell", cell, "argv", args, "created", r->created,
			      "remote", r->remote, "revision", r->ctx.revision,
			      "gpus", r->cfg.remote.gpus);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s ? s : xstrdup("{}");
}

/* What every runtime's job script takes from the run. */
static void base_spec(const struct run *r, struct launch_spec *s)
{
	const struct config *cfg = &r->cfg;
	memset(s, 0, sizeof(*s));
	s->id = r->id;
	s->runtime = cfg->remote.runtime;
	s->np = cfg->job.np;
	s->timeout = cfg->job.timeout;
	s->env = r->env;
	s->nenv = r->nenv;
	s->gpus = cfg->remote.gpus;
	s->mpirun_args = cfg->remote.mpirun_args;
	s->args = (const char *const *)r->args;
}

static int submit(struct run *r, const char *cell)
{
	struct launch_spec s;
	struct buf script = BUF_INIT;
	char *image = NULL, *json = NULL, *password = NULL, *login = NULL;
	char *cell_layer = NULL, *project_layer = NULL;
	const struct config *cfg = &r->cfg;
	int ret = -1, inline_cell = 0;

	base_spec(r, &s);
	if (s.runtime == RUNTIME_NONE) {
		/* A small cell layer goes with the job's start (one round trip less). */
		inline_cell = !r->detach && r->ctx.cell.size <= CELL_INLINE_MAX;
		if (!inline_cell && (ret = remote_job_put_layer(r->conn, cfg->remote.workdir,
								r->ctx.cell.digest,
								r->ctx.cell.path)) < 0)
			goto out;
		cell_layer = xstrfmt("../../layers/%s.tar.gz", r->ctx.cell.digest + 7);
		if (r->ctx.project.size > 0) {
			if ((ret = remote_job_put_layer(r->conn, cfg->remote.workdir,
							r->ctx.project.digest,
							r->ctx.project.path)) < 0)
				goto out;
			project_layer = xstrfmt("../../layers/%s.tar.gz", r->ctx.project.digest + 7);
		}
		s.cell_layer = cell_layer;
		s.project_layer = project_layer;
		s.python = cfg->remote.python;
		s.setup = cfg->remote.setup;
		s.workdir = r->ctx.workdir;
		s.image_env = (const char *const *)r->ctx.env;
		s.nimage_env = r->ctx.nenv;
	} else {
		image = pull_reference(&r->img, cfg->remote.pull_registry);
		s.image = image;
		s.tls_verify_off = cfg->registry.insecure ||
			(cfg->registry.url && !strncmp(cfg->registry.url, "http://", 7));
		s.image_present = r->pulled;
		if (cfg->registry.username && !r->pulled) {
			password = registry_password(&cfg->registry);
			if (password) {
				login = registry_host(image);
				s.login_registry = login;
				s.login_user = cfg->registry.username;
			}
		}
	}
	json = job_json(r, r->have_img ? r->img.reference : NULL, cell);
	if ((ret = launch_script(&s, &script)) < 0)
		goto out;
	if (inline_cell && (remote_job_layer_from_stdin(&r->start, cfg->remote.workdir,
							r->ctx.cell.digest, r->ctx.cell.size,
							r->id) < 0 ||
			    buf_read_file(&r->start_in, r->ctx.cell.path) < 0)) {
		ret = -1;
		goto out;
	}
	if (!r->detach && remote_job_start_command(&r->start, r->dir, json, script.ptr) == 0) {
		/* Started with the follower, in the same round trip. */
		if (password)
			buf_addf(&r->start_in, "%s\n", password);
		goto out;
	}
	buf_reset(&r->start);
	buf_reset(&r->start_in);
	if (inline_cell && (ret = remote_job_put_layer(r->conn, cfg->remote.workdir,
							r->ctx.cell.digest, r->ctx.cell.path)) < 0)
		goto out;
	if (r->deferred) {
		ret = error_set(PS_EXIT_USAGE, "the job's arguments and environment are too large "
				"to pass on a command line");
		error_hint("pass large values in a file (--input)");
		goto out;
	}
	ret = remote_job_submit(r->conn, r->dir, json, script.ptr, password);
out:
	wipe(password);
	free(login);
	free(image);
	free(json);
	free(cell_layer);
	free(project_layer);
	buf_release(&script);
	return ret;
}

static void save_record(struct run *r, const char *cell)
{
	struct jobrec rec;
	jobrec_init(&rec);
	jobrec_set(&rec.id, r->id);
	jobrec_set(&rec.remote, r->remote);
	jobrec_set(&rec.host, r->host);
	jobrec_set(&rec.host_name, ssh_conn_name(r->conn));
	jobrec_set(&rec.jobdir, r->dir);
	jobrec_set(&rec.runtime, runtime_name(r->cfg.remote.runtime));
	if (r->have_img) {
		jobrec_set(&rec.image, r->img.reference);
		jobrec_set(&rec.digest, r->img.digest);
	}
	jobrec_set(&rec.revision, r->ctx.revision);
	jobrec_set(&rec.cell, cell);
	jobrec_set(&rec.results, r->results);
	jobrec_set(&rec.state, "submitted");
	jobrec_set_np(&rec, r->cfg.job.np);
	rec.created = r->created;
	if (jobrec_save(&rec) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
	jobrec_release(&rec);
}

struct final {
	const char *state;
	const char *reason;
	int exit_code;
	const struct follow *f;
	const char *results;
};

static int update_record(struct jobrec *rec, void *ctx)
{
	const struct final *fin = ctx;
	const struct follow *f = fin->f;
	jobrec_set(&rec->state, fin->state);
	jobrec_set(&rec->state_reason, fin->reason);
	jobrec_set(&rec->results, fin->results);
	rec->exit_code = fin->exit_code;
	rec->checked = now_wall();
	if (f) {
		if (f->started > 0)
			rec->started = f->started;
		if (f->ended > 0)
			rec->ended = f->ended;
		jobrec_set_np(rec, f->np);
		for (int i = 0; i < f->np; i++) {
			rec->ranks[i].exit_code = f->ranks[i].exit_code;
			rec->ranks[i].duration = f->ranks[i].duration;
		}
	}
	return 0;
}

static void finish_record(struct run *r, const char *state, const char *reason, int code,
			  const char *results)
{
	struct final fin = { state, reason, code, r->have_follow ? &r->f : NULL, results };
	if (jobrec_update(r->id, update_record, &fin) < 0) {
		log_warn("%s", error_message());
		error_clear();
	}
}

/* Stops the job after Ctrl-C or a timeout; the state it ended in, or NULL. */
static char *stop_job(struct run *r, const char *final)
{
	char *state = NULL;
	interrupted = 0;
	error_clear();
	fprintf(stderr, "pystrib: stopping job %s on '%s'\n", r->id, ssh_conn_name(r->conn));
	/* Nothing heard from the job yet: its start may still be on the way. */
	int (*cancel)(struct ssh_conn *, const char *, const char *, char **) =
		r->have_follow && !r->f.state ? remote_job_cancel_unstarted : remote_job_cancel;
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

/* The last lines of a local file (logs/job.err); caller frees. */
static char *file_tail(const char *path, int lines)
{
	struct buf b;
	buf_init(&b, 8 << 20);
	if (buf_read_file(&b, path) < 0) {
		buf_release(&b);
		return xstrdup("");
	}
	buf_rtrim(&b);
	size_t i = b.len;
	while (i > 0) {
		if (b.ptr[i - 1] == '\n' && --lines <= 0)
			break;
		i--;
	}
	char *s = xstrdup(b.ptr + i);
	buf_release(&b);
	return s;
}

static int disk_full(const char *text)
{
	return text && strcasestr(text, "no space left on device") != NULL;
}

/*
 * The exit code of a job that ended in `state`: a failure the job script
 * put down to the registry (f->reason "registry: ...") or the host (a
 * missing command, a full disk) is 3 or 4, not a rank's failure.
 */
static int exit_code_of(const struct follow *f, const char *state, const char *tail)
{
	if (!strcmp(state, "succeeded"))
		return 0;
	if (!strcmp(state, "timeout"))
		return PS_EXIT_TIMEOUT;
	if (!strcmp(state, "lost"))
		return PS_EXIT_REMOTE;
	if (!strcmp(state, "cancelled"))
		return interrupted ? PS_EXIT_INTERRUPTED : PS_EXIT_RANK;
	if (f->reason)
		return !strncmp(f->reason, "registry: ", 10) ? PS_EXIT_REGISTRY : PS_EXIT_REMOTE;
	return disk_full(tail) ? PS_EXIT_REMOTE : PS_EXIT_RANK;
}

/* What to do about a failure of the host or the registry. */
static const char *failure_hint(const struct follow *f, const char *tail)
{
	const char *why = f->reason ? f->reason : "";
	if (disk_full(why) || disk_full(tail))
		return "free some space on the host ('pystrib gc' removes old jobs' directories)";
	if (strstr(why, "is not installed"))
		return "install it there, or choose another runtime (--runtime docker|podman|none, "
		       "[remote] runtime)";
	if (strstr(why, "has no 'mpirun'"))
		return "base the image on one with Open MPI ([image] base)";
	if (!strncmp(why, "registry: ", 10))
		return "check that the host reaches the registry ([remote] pull_registry) and "
		       "that [registry] username and password are right";
	return NULL;
}

/* Summary, done event, exit code. */
static int summarize(struct run *r, int fetched)
{
	struct follow *f = &r->f;
	const char *state = f->state ? f->state : "lost";
	int bad = follow_failed_rank(f), code;
	char *tail = NULL;

	if (bad >= 0 && strcmp(state, "succeeded")) {
		tail = xstrdup(follow_err_tail(f, bad, 20));
	} else if (strcmp(state, "succeeded") && fetched) {
		char *p = xstrfmt("%s/logs/job.err", r->results);
		tail = file_tail(p, 20);
		free(p);
	}
	code = exit_code_of(f, state, tail);
	follow_summary(f, r->id, code, bad, r->have_img ? r->img.reference : NULL,
		       fetched ? r->results : NULL, tail);
	if (!log_json) {
		const char *hint = code != PS_EXIT_RANK ? failure_hint(f, tail) : NULL;
		if (hint)
			fprintf(stderr, "hint: %s\n", hint);
	}
	finish_record(r, state, f->reason, f->exit_code, fetched ? r->results : NULL);
	free(tail);
	return code;
}

static int add_env(struct run *r, const char *kv)
{
	const char *eq = strchr(kv, '=');
	if (!eq || !launch_env_name_ok(kv, (size_t)(eq - kv)))
		return error_set(PS_EXIT_USAGE, "invalid --env '%s'", kv),
		       error_hint("write --env KEY=VALUE, KEY made of letters, digits and _");
	r->env = xrealloc(r->env, (r->nenv + 1) * sizeof(*r->env));
	r->env[r->nenv++] = kv;
	return 0;
}

/* The results tar, as the follower sends it once the job ended. */
static int on_tar(void *ctx, const void *data, size_t len)
{
	struct run *r = ctx;
	if (!data) {
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
	return fetch(r, 1);
}

/* The job record, the job event and the line saying where it runs. */
static void announce(struct run *r)
{
	if (r->announced)
		return;
	r->announced = 1;
	save_record(r, r->copts.cell);
	event_emit("job", "{s:s,s:s?,s:s,s:i,s:s?,s:s,s:s}", "id", r->id, "remote", r->remote,
		   "host", ssh_conn_name(r->conn), "np", r->cfg.job.np,
		   "image", r->have_img ? r->img.reference : NULL,
		   "runtime", runtime_name(r->cfg.remote.runtime), "dir", r->dir);
	if (!log_json && !r->detach)
		fprintf(stderr, "pystrib: job %s: %d rank%s on '%s' (%s)\n", r->id, r->cfg.job.np,
			r->cfg.job.np == 1 ? "" : "s", ssh_conn_name(r->conn),
			runtime_name(r->cfg.remote.runtime));
}

static void on_state(void *ctx, const char *state)
{
	announce(ctx);
	if (log_verbosity > 0) {
		char *what = xstrfmt("job state '%s' seen", state);
		stage(what);
		free(what);
	}
	if (!log_json && (!strcmp(state, "pulling") || log_verbosity > 0))
		fprintf(stderr, "pystrib: %s\n", !strcmp(state, "pulling") ? "pulling the image" : state);
}

/* Connects to the host. 0, or the error reported: its exit code. */
static int open_conn(struct run *r)
{
	int rc = ssh_conn_open(&r->conn, &r->target, r->accept_new ? SSH_ACCEPT_NEW_HOSTKEY : 0);
	if (rc < 0) {
		if (rc == SSH_R_HOSTKEY_UNKNOWN && !error_hint_text())
			error_hint("check the fingerprint, then run again with --accept-new-host-key "
				   "(or 'pystrib doctor --trust-host')");
		return -1;
	}
	stage("connected");
	return 0;
}

static void init_follow(struct run *r)
{
	follow_init(&r->f, r->dir, r->cfg.job.np);
	r->have_follow = 1;
	r->f.reconnect_timeout = r->cfg.remote.reconnect_timeout;
	r->f.on_state = on_state;
	r->f.on_tar = on_tar;
	r->f.ctx = r;
	/* The job's own watchdog stops it at --timeout; this is for a host that
	 * cannot (not while the push may still run: it would count too). */
	if (r->cfg.job.timeout > 0 && !r->deferred)
		r->f.deadline = now_monotonic() + r->cfg.job.timeout + 30;
}

/* After follow_job returned rc: stop, fetch, summarize. The exit code. */
static int after_follow(struct run *r, int rc)
{
	stage("job ended");
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
	if (rc == SSH_R_INTERRUPTED || rc == SSH_R_TIMEOUT) {
		int intr = rc == SSH_R_INTERRUPTED;
		const char *want = intr ? "cancelled" : "timeout";
		results_unpack_abort(r->unpack);
		r->unpack = NULL;
		announce(r);
		char *st = stop_job(r, want);
		int fetched = fetch(r, 0) == 0;
		finish_record(r, st ? st : want, NULL, -1, fetched ? r->results : NULL);
		event_emit("done", "{s:s,s:s,s:i,s:s?}", "id", r->id, "state", st ? st : want,
			   "exit_code", intr ? PS_EXIT_INTERRUPTED : PS_EXIT_TIMEOUT, "results",
			   fetched ? r->results : NULL);
		if (!log_json)
			fprintf(stderr, "pystrib: job %s %s\n", r->id, st ? st : "may still run");
		free(st);
		return intr ? PS_EXIT_INTERRUPTED : PS_EXIT_TIMEOUT;
	}
	if (rc < 0) {
		error_hint("the job goes on running there: 'pystrib attach %s' follows it again",
			   r->id);
		return error_report();
	}
	rc = results_in(r);
	stage("results unpacked");
	return summarize(r, rc == 0);
}

/*
 * Push (docker, podman), connect, submit, follow: one after the other. For
 * runtime none (its layers go up over the SSH connection) and --detach.
 */
static int submit_and_follow(struct run *r);

static int run_in_turn(struct run *r)
{
	if (r->cfg.remote.runtime != RUNTIME_NONE) {
		if (push_image_as(&r->cfg, &r->ctx, NULL, r->copts.cell, &r->img) < 0)
			return error_report();
		r->have_img = 1;
		stage("image pushed");
	}
	if (open_conn(r) < 0)
		return error_report();
	return submit_and_follow(r);
}

/* Connected, the image pushed: the job started through a shell, followed. */
static int submit_and_follow(struct run *r)
{
	int rc;

	if (!r->dir)
		r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	if (submit(r, r->copts.cell) < 0) {
		if (error_kind() == PS_EXIT_INTERRUPTED) {
			char *st = stop_job(r, "cancelled");
			free(st);
			error_set(PS_EXIT_INTERRUPTED, "interrupted");
		}
		return error_report();
	}
	announce(r);
	if (r->detach) {
		if (!log_json)
			printf("%s\n", r->id);
		return 0;
	}
	if (!r->have_follow)
		init_follow(r);
	if (r->start.len) {
		r->f.start_cmd = r->start.ptr;
		r->f.stdin_data = r->start_in.len ? r->start_in.ptr : NULL;
		r->f.stdin_len = r->start_in.len;
	}
	rc = follow_job(r->conn, &r->f);
	if (r->start_in.len)
		memset(r->start_in.ptr, 0, r->start_in.len);
	return after_follow(r, rc);
}

/* How long an early pull may take before it is given up (the job's own goes on). */
#define EARLY_PULL_MAX 1800

/*
 * runtime docker: the image pulled through the engine's API socket on a
 * connection of its own, with no remote shell, while the job's shell (on
 * the main connection) still runs the login scripts; the job then starts
 * with the image there and no registry password is sent to it. Only a head
 * start: when it cannot (no socket, no access, a refused stream), the job
 * pulls the image itself, so a failure here is only logged.
 */
static void pull_early(struct run *r)
{
	const struct config *cfg = &r->cfg;
	struct ssh_conn *c = NULL;
	char *image = pull_reference(&r->img, cfg->remote.pull_registry);
	char *password = cfg->registry.username ? registry_password(&cfg->registry) : NULL;
	char *server = password ? registry_host(image) : NULL;
	struct engine_auth auth = { cfg->registry.username, password, server };

	if (ssh_conn_open(&c, &r->target, 0) == 0 &&
	    engine_pull(c, cfg->remote.docker_socket, image, &auth,
			now_monotonic() + EARLY_PULL_MAX, &r->early_stop) == 0) {
		r->pulled = 1;
		stage("image pulled through the engine's socket");
	} else {
		log_info("no pull through '%s' (the job pulls the image itself): %s",
			 cfg->remote.docker_socket, error_message());
	}
	error_clear();
	ssh_conn_free(c);
	wipe(password);
	free(server);
	free(image);
}

/* The push thread of run_overlapped, and what it leaves for the main one. */
struct pusher {
	struct run *r;
	int fd;			/* where the remote command goes (closed when done) */
	int ret;
	enum ps_exit kind;	/* its error, when ret < 0 (errors are per thread) */
	char *msg, *hint;
	int push_only;		/* run_engine: the push, nothing more */
};

/* The push thread's error, reported here. */
static int push_error(const struct pusher *p)
{
	error_set(p->kind, "%s", p->msg);
	if (p->hint)
		error_hint("%s", p->hint);
	return error_report();
}

static void *push_thread(void *arg)
{
	struct pusher *p = arg;
	struct run *r = p->r;
	char *msg = NULL;
	size_t len = 0;

	p->ret = push_image_as(&r->cfg, &r->ctx, NULL, r->copts.cell, &r->img);
	if (p->ret == 0 && p->push_only) {
		r->have_img = 1;
		stage("image pushed");
		goto out;
	}
	if (p->ret == 0) {
		r->have_img = 1;
		stage("image pushed");
		if (engine_socket(&r->cfg.remote))
			pull_early(r);
		/* Interrupted during that pull: no job is started at all. */
		p->ret = interrupted ? error_set(PS_EXIT_INTERRUPTED, "interrupted")
				     : submit(r, r->copts.cell);
	}
	if (p->ret == 0) {
		msg = follow_start_message(&r->f, r->start.ptr, r->start_in.ptr, r->start_in.len,
					   &len);
		for (size_t off = 0; off < len; ) {
			ssize_t w = write(p->fd, msg + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				break;	/* the SSH side gave up: it reports why */
			off += (size_t)w;
		}
		memset(msg, 0, len);
		free(msg);
		memset(r->start_in.ptr, 0, r->start_in.len);
	}
out:
	if (p->ret < 0) {
		p->kind = error_kind();
		p->msg = xstrdup(error_message());
		p->hint = error_hint_text() ? xstrdup(error_hint_text()) : NULL;
		error_clear();	/* this thread's own record, freed before it ends */
	}
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	/* This thread's OpenSSL state (the DRBG its SSH key exchange made):
	 * the exit of a thread does not always free it. */
	OPENSSL_thread_stop();
	return NULL;
}

/*
 * Containers, not detached: the push runs in a thread while this one logs
 * in to the host and starts a remote shell that waits for the job's
 * command (a remote login may take seconds: shells' start-up files). The
 * command follows as soon as the image is in the registry and, for docker,
 * pulled on the host through the engine's socket (pull_early), in the same
 * round trip as the follower and the results.
 */
static int run_overlapped(struct run *r)
{
	struct pusher p = { r, -1, 0, PS_EXIT_OK, NULL, NULL, 0 };
	pthread_t th;
	int fds[2], rc = 0, ret;

	r->deferred = 1;
	r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	init_follow(r);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return error_set(PS_EXIT_USAGE, "cannot make a pipe: %s", strerror(errno)),
		       error_report();
	p.fd = fds[1];
	r->f.start_fd = fds[0];
	if (pthread_create(&th, NULL, push_thread, &p) != 0) {
		close(fds[0]);
		close(fds[1]);
		return error_set(PS_EXIT_USAGE, "cannot start a thread"), error_report();
	}
	int opened = open_conn(r) == 0;
	if (opened)
		rc = follow_job(r->conn, &r->f);
	else
		interrupted = 1;	/* no host: the push is for nothing, stop it */
	atomic_store(&r->early_stop, 1);
	close(fds[0]);
	pthread_join(th, NULL);
	if (!opened) {
		interrupted = 0;
		ret = error_report();
	} else if (p.ret < 0) {
		/* No job was started: the command never went. */
		ret = push_error(&p);
	} else {
		ret = after_follow(r, rc);
	}
	free(p.msg);
	free(p.hint);
	return ret;
}

/*
 * The job without any remote shell: its container created and started
 * through the engine's socket. Only where the job's directory is known
 * without asking a shell and will belong to the login user: runtime
 * docker (with a socket), an absolute [remote] workdir, and root's login
 * (the engine makes the directory as root). Not for --detach.
 */
static int engine_eligible(const struct run *r)
{
	const char *w = r->cfg.remote.workdir;
	return engine_socket(&r->cfg.remote) && !r->detach && w && w[0] == '/' &&
	       r->target.user && !strcmp(r->target.user, "root");
}

/*
 * Pulls the image through the engine's socket, then has the engine create
 * and start the job's container, whose own command sets up the job
 * directory and runs the job (launch_engine_config). 0 with *cid (the
 * container's id), or -1 with the error set when no job started.
 */
static int engine_launch(struct run *r, char **cid)
{
	const struct config *cfg = &r->cfg;
	const char *socket = engine_socket(&cfg->remote);
	struct launch_spec s;
	struct buf script = BUF_INIT;
	char *image = pull_reference(&r->img, cfg->remote.pull_registry);
	char *password = cfg->registry.username ? registry_password(&cfg->registry) : NULL;
	char *server = password ? registry_host(image) : NULL;
	struct engine_auth auth = { cfg->registry.username, password, server };
	char *json = NULL, *name = NULL;
	json_t *config = NULL;
	int ret;

	*cid = NULL;
	ret = engine_pull(r->conn, socket, image, &auth, now_monotonic() + EARLY_PULL_MAX, NULL);
	wipe(password);
	free(server);
	if (ret < 0)
		goto out;
	r->pulled = 1;
	stage("image pulled through the engine's socket");
	base_spec(r, &s);
	s.image = image;
	s.image_present = 1;
	s.in_engine = 1;
	s.workdir = r->ctx.workdir;
	json = job_json(r, r->img.reference, r->copts.cell);
	if ((ret = launch_script(&s, &script)) < 0)
		goto out;
	config = launch_engine_config(&s, r->dir, json, script.ptr);
	name = xstrfmt(LAUNCH_CONTAINER_PREFIX "%s", r->id);
	if ((ret = engine_create(r->conn, socket, name, config, cid)) < 0)
		goto out;
	if ((ret = engine_start(r->conn, socket, *cid)) < 0) {
		/* Not started (or not known to be): it goes, and the job with it. */
		char *why = xstrdup(error_message());
		enum ps_exit kind = error_kind();
		int intr = interrupted;
		interrupted = 0;
		error_clear();
		if (engine_remove(r->conn, socket, *cid) < 0)
			log_warn("could not remove container %s: %s", name, error_message());
		error_clear();
		interrupted = intr;
		error_set(kind, "%s", why);
		free(why);
		free(*cid);
		*cid = NULL;
		goto out;
	}
	stage("container started through the engine's socket");
out:
	json_decref(config);
	buf_release(&script);
	free(name);
	free(json);
	free(image);
	return ret < 0 ? -1 : 0;
}

/*
 * Containers with engine_eligible: push (in a thread) while this one
 * logs in, then pull, create and start through the engine's socket, and
 * follow in the container. No remote shell: a shell's start-up files
 * (conda, pyenv) often take longer than all the rest. Whatever keeps the
 * container from starting, the job starts through a shell instead.
 */
static int run_engine(struct run *r)
{
	struct pusher p = { r, -1, 0, PS_EXIT_OK, NULL, NULL, 1 };
	pthread_t th;
	char *cid = NULL;
	int ret;

	r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	if (pthread_create(&th, NULL, push_thread, &p) != 0)
		return error_set(PS_EXIT_USAGE, "cannot start a thread"), error_report();
	int opened = open_conn(r) == 0;
	if (!opened)
		interrupted = 1;	/* no host: the push is for nothing, stop it */
	pthread_join(th, NULL);
	if (!opened) {
		interrupted = 0;
		ret = error_report();
	} else if (p.ret < 0) {
		ret = push_error(&p);
	} else if (engine_launch(r, &cid) < 0) {
		if (error_kind() == PS_EXIT_INTERRUPTED) {
			ret = error_report();
		} else {
			log_info("the job starts through a shell: %s", error_message());
			error_clear();
			ret = submit_and_follow(r);
		}
	} else {
		const char *socket = engine_socket(&r->cfg.remote);
		long pid = 0;
		init_follow(r);
		announce(r);
		/* The host's tools (jobctl.sh) signal the container's main process. */
		if (engine_pid(r->conn, socket, cid, &pid) < 0) {
			log_info("%s", error_message());
			error_clear();
		}
		int rc = follow_job_engine(r->conn, &r->f, socket, cid, "/pystrib/job", pid);
		/* The results are here: the container, which waits for that
		 * (launch.c), can end. Ended from here, after the follower's
		 * exec, never while an exec's stream is still open: the engine
		 * may never close a stream whose container went. */
		if (r->f.done && engine_kill(r->conn, socket, cid) < 0) {
			log_info("%s (it ends on its own within a minute)", error_message());
			error_clear();
		}
		ret = after_follow(r, rc);
	}
	free(cid);
	free(p.msg);
	free(p.hint);
	return ret;
}

static int parse(struct run *r, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "np", required_argument, 0, 'n' },
		{ "remote", required_argument, 0, 'r' },
		{ "host", required_argument, 0, OPT_HOST },
		{ "runtime", required_argument, 0, OPT_RUNTIME },
		{ "gpus", required_argument, 0, OPT_GPUS },
		{ "timeout", required_argument, 0, OPT_TIMEOUT },
		{ "results", required_argument, 0, OPT_RESULTS },
		{ "env", required_argument, 0, 'e' },
		{ "detach", no_argument, 0, 'd' },
		{ "accept-new-host-key", no_argument, 0, OPT_ACCEPT },
		CONTEXT_LONG_OPTIONS,
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	const char *np = NULL, *runtime = NULL, *gpus = NULL, *timeout = NULL;
	int c, k;

	while ((c = cli_getopt(argc, argv, "n:r:e:d", opts, cmd_run_help)) != -1) {
		if (c == CLI_HELP)
			return 1;
		if (c == CLI_ERROR)
			return -PS_EXIT_USAGE;
		if ((k = context_option(&r->copts, c, optarg)) < 0)
			return -1;
		if (k > 0)
			continue;
		switch (c) {
		case 'n': np = optarg; break;
		case 'r': r->remote = optarg; break;
		case OPT_HOST: r->host = optarg; break;
		case OPT_RUNTIME: runtime = optarg; break;
		case OPT_GPUS: gpus = optarg; break;
		case OPT_TIMEOUT: timeout = optarg; break;
		case OPT_RESULTS: r->results_flag = optarg; break;
		case 'e':
			if (add_env(r, optarg) < 0)
				return -1;
			break;
		case 'd': r->detach = 1; break;
		case OPT_ACCEPT: r->accept_new = 1; break;
		}
	}
	if (optind >= argc)
		return -(cli_usage_error(cmd_run_help, "run needs the cell FILE"));
	if (r->remote && r->host)
		return -(cli_usage_error(cmd_run_help, "--remote and --host both say where; give one"));
	r->copts.cell = argv[optind];
	r->args = argv + optind + 1;
	if (config_load(&r->cfg, cli.config_file, r->remote) < 0 ||
	    (np && config_set(&r->cfg, "job.np", np, "flag --np") < 0) ||
	    (runtime && config_set(&r->cfg, "remote.runtime", runtime, "flag --runtime") < 0) ||
	    (gpus && config_set(&r->cfg, "remote.gpus", gpus, "flag --gpus") < 0) ||
	    (timeout && config_set(&r->cfg, "job.timeout", timeout, "flag --timeout") < 0))
		return -1;
	return 0;
}

int cmd_run(int argc, char **argv)
{
	struct run r;
	char *cache = NULL;
	const char *exclude[1];
	int ret, rc;

	memset(&r, 0, sizeof(r));
	t_start = now_monotonic();
	buf_init(&r.start, 0);
	buf_init(&r.start_in, 0);
	rc = parse(&r, argc, argv);
	if (rc == 1) {
		ret = 0;
		goto out;
	}
	if (rc < 0) {
		ret = rc == -1 ? error_report() : -rc;
		goto out;
	}
	if (access(r.copts.cell, R_OK) < 0) {
		error_set(PS_EXIT_USAGE, "cannot read '%s': %s", r.copts.cell, strerror(errno));
		ret = error_report();
		goto out;
	}
	/* Where the results come back, and never into the image. */
	if (jobrec_new_id(r.id) < 0) {
		ret = error_report();
		goto out;
	}
	r.created = now_wall();
	r.results = r.results_flag ? xstrdup(r.results_flag)
		  : xstrfmt("%s/%s", r.cfg.job.results ? r.cfg.job.results : "./pystrib-results", r.id);
	exclude[0] = r.results_flag ? r.results_flag
		   : (r.cfg.job.results ? r.cfg.job.results : "./pystrib-results");
	r.copts.exclude = exclude;
	r.copts.nexclude = 1;
	r.copts.base = r.cfg.image.base;

	/* Where it runs: checked before building anything. */
	if (ssh_target_from_config(&r.target, &r.cfg) < 0) {
		if (!r.host) {
			ret = error_report();
			goto out;
		}
		error_clear();
	}
	if (r.host && ssh_target_parse(&r.target, r.host) < 0) {
		ret = error_report();
		goto out;
	}

	cache = context_cache_dir();
	if (context_build(&r.ctx, &r.copts, cache) < 0) {
		ret = error_report();
		goto out;
	}
	stage("context built");
	if (engine_eligible(&r))
		ret = run_engine(&r);
	else if (r.cfg.remote.runtime != RUNTIME_NONE && !r.detach)
		ret = run_overlapped(&r);
	else
		ret = run_in_turn(&r);
out:
	results_unpack_abort(r.unpack);
	if (r.start_in.len)
		memset(r.start_in.ptr, 0, r.start_in.len);
	buf_release(&r.start);
	buf_release(&r.start_in);
	if (r.have_follow)
		follow_release(&r.f);
	ssh_conn_free(r.conn);
	ssh_target_release(&r.target);
	if (r.have_img)
		pushed_image_release(&r.img);
	context_release(&r.ctx);
	context_options_release(&r.copts);
	config_release(&r.cfg);
	free(cache);
	free(r.env);
	free(r.dir);
	free(r.results);
	return ret;
}
