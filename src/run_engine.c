#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "error.h"
#include "launch.h"
#include "log.h"
#include "ref.h"
#include "remote_job.h"
#include "run.h"
#include "util.h"

/*
 * The job without any remote shell: its container created and started
 * through the engine's socket. Only where the job's directory is known
 * without asking a shell and will belong to the login user: runtime
 * docker (with a socket), an absolute [remote] workdir, and root's login
 * (the engine makes the directory as root). Not for --detach.
 */
int run_engine_eligible(const struct run *r)
{
	const char *w = r->cfg.remote.workdir;
	return engine_socket(&r->cfg.remote) && !r->opt.detach && w && w[0] == '/' &&
	       r->target.user && !strcmp(r->target.user, "root");
}

/* Removes a container that did not start (or is not known to have), keeping the error. */
static void remove_unstarted(struct run *r, const char *socket, const char *cid)
{
	char *why = xstrdup(error_message());
	enum ps_exit kind = error_kind();
	int intr = interrupt_clear();
	error_clear();
	if (engine_remove(r->conn, socket, cid) < 0)
		log_info("could not remove container %s%s: %s", LAUNCH_CONTAINER_PREFIX, r->id,
			 error_message());
	error_clear();
	if (intr)
		interrupt_set();
	error_set(kind, "%s", why);
	free(why);
}

/*
 * Pulls the image through the engine's socket, then has the engine create
 * and start the job's container, whose own command sets up the job
 * directory and runs the job (launch_engine_config). 0 with *cid (the
 * container's id), or -1 with the error set when no job started.
 */
static int engine_launch(struct run *r, char **cid)
{
	const char *socket = engine_socket(&r->cfg.remote);
	struct launch_spec s;
	struct buf script = BUF_INIT;
	char *image = NULL, *json = NULL, *name = NULL;
	json_t *config = NULL;
	int ret = -1;

	*cid = NULL;
	if (run_pull_through_engine(r, r->conn, NULL) < 0)
		goto out;
	image = ref_pull_reference(r->img.pinned, r->img.repository, r->img.digest,
				   r->cfg.remote.pull_registry);
	run_base_spec(r, &s);
	s.image = image;
	s.image_present = 1;
	s.in_engine = 1;
	s.workdir = r->ctx.workdir;
	json = run_job_json(r, r->img.pinned);
	if (launch_script(&s, &script) < 0)
		goto out;
	config = launch_engine_config(&s, r->dir, json, script.ptr);
	name = xstrfmt(LAUNCH_CONTAINER_PREFIX "%s", r->id);
	if (engine_create(r->conn, socket, name, config, cid) < 0)
		goto out;
	if (engine_start(r->conn, socket, *cid) < 0) {
		/* Not started (or not known to be): it goes, and the job with it. */
		remove_unstarted(r, socket, *cid);
		free(*cid);
		*cid = NULL;
		goto out;
	}
	run_stage("container started through the engine's socket");
	ret = 0;
out:
	json_decref(config);
	buf_release(&script);
	free(name);
	free(json);
	free(image);
	return ret;
}

/* The container runs the job: follow it there, then let it end. */
static int follow_in_container(struct run *r, const char *cid)
{
	const char *socket = engine_socket(&r->cfg.remote);
	long pid = 0;

	run_init_follow(r);
	run_announce(r);
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
	return run_after_follow(r, rc);
}

/*
 * Containers with run_engine_eligible: push (in a thread) while this one
 * logs in, then pull, create and start through the engine's socket, and
 * follow in the container. No remote shell: a shell's start-up files
 * (conda, pyenv) often take longer than all the rest. Whatever keeps the
 * container from starting, the job starts through a shell instead.
 */
int run_through_engine(struct run *r)
{
	char *cid = NULL;
	int ret;

	r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	if ((ret = run_push_beside_login(r, 0)) != 0)
		return ret;
	if (engine_launch(r, &cid) < 0) {
		if (error_kind() == PS_EXIT_INTERRUPTED)
			return error_report();
		log_info("the job starts through a shell: %s", error_message());
		error_clear();
		return run_submit_and_follow(r);
	}
	ret = follow_in_container(r, cid);
	free(cid);
	return ret;
}
