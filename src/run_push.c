#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "engine.h"
#include "error.h"
#include "log.h"
#include "ref.h"
#include "remote_job.h"
#include "run.h"
#include "util.h"

/* How long a pull through the engine may take before it is given up. */
#define ENGINE_PULL_MAX 1800

int run_pull_through_engine(struct run *r, struct ssh_conn *conn, atomic_int *stop)
{
	const struct config *cfg = &r->cfg;
	struct credentials cred = { 0 };
	struct ssh_conn *own = NULL;
	char *image = ref_pull_reference(r->img.pinned, r->img.repository, r->img.digest,
					 cfg->remote.pull_registry);
	char *server = NULL;
	int ret = -1, have = run_credentials(r, &cred);

	if (have < 0)
		goto out;
	server = have ? ref_registry_part(image) : NULL;
	struct engine_auth auth = { cred.username, cred.password, server };
	if (!conn && ssh_conn_open(&own, &r->target, 0) < 0)
		goto out;
	ret = engine_pull(conn ? conn : own, cfg->remote.docker_socket, image, &auth,
			  now_monotonic() + ENGINE_PULL_MAX, stop);
	if (ret == 0) {
		r->pulled = 1;
		run_stage("image pulled through the engine's socket");
	}
out:
	credentials_release(&cred);
	ssh_conn_free(own);
	free(server);
	free(image);
	return ret < 0 ? -1 : 0;
}

/* The push thread, and what it leaves for the main one. */
struct pusher {
	struct run *r;
	int fd;			/* where the remote command goes (closed when done); -1: none */
	int ret;
	enum ps_exit kind;	/* its error, when ret < 0 (errors are per thread) */
	char *msg, *hint;
	enum { PUSH_SUBMIT, PUSH_ONLY, PUSH_PULL } what;	/* and then: submit, nothing, pull */
};

/* The push thread's error, reported here. */
static int push_error(const struct pusher *p)
{
	error_set(p->kind, "%s", p->msg);
	if (p->hint)
		error_hint("%s", p->hint);
	return error_report();
}

/* The job's command and its stdin, to the remote shell that waits for them. */
static void send_start(struct pusher *p)
{
	struct run *r = p->r;
	size_t len = 0;
	char *msg = follow_start_message(&r->f, r->start.ptr, r->start_in.ptr, r->start_in.len,
					 &len);
	for (size_t off = 0; off < len; ) {
		ssize_t w = write(p->fd, msg + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;	/* the SSH side gave up: it reports why */
		off += (size_t)w;
	}
	secret_wipe(msg, len);
	free(msg);
	secret_wipe(r->start_in.ptr, r->start_in.len);
}

/*
 * runtime docker: the image pulled through the engine's API socket on a
 * connection of its own, with no remote shell, while the job's shell still
 * runs the login scripts; the job then starts with the image there and no
 * registry password. Only a head start: when it cannot, the job pulls the
 * image itself, so a failure here is only logged.
 */
static void pull_early(struct run *r)
{
	if (run_pull_through_engine(r, NULL, &r->early_stop) < 0)
		log_info("no pull through '%s' (the job pulls the image itself): %s",
			 r->cfg.remote.docker_socket, error_message());
	error_clear();
}

static void *push_thread(void *arg)
{
	struct pusher *p = arg;
	struct run *r = p->r;

	p->ret = push_image_as(&r->cfg, &r->ctx, NULL, r->copts.session ? "session" : r->copts.cell,
			       &r->img);
	if (p->ret == 0) {
		r->have_img = 1;
		run_stage("image pushed");
	}
	if (p->ret == 0 && p->what != PUSH_ONLY && engine_socket(&r->cfg.remote))
		pull_early(r);
	if (p->ret == 0 && p->what == PUSH_SUBMIT) {
		/* Interrupted during that pull: no job is started at all. */
		p->ret = interrupt_requested() ? error_set(PS_EXIT_INTERRUPTED, "interrupted") : run_submit(r);
		if (p->ret == 0)
			send_start(p);
	}
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
 * Starts p's thread, connects (and, with follow, follows: the job's
 * command arrives through p->fd), joins. 0 with *rc the follower's
 * result, or the exit code of the error reported.
 */
static int beside_login(struct run *r, struct pusher *p, int follow, int *rc)
{
	pthread_t th;
	int ret = 0;

	int e = pthread_create(&th, NULL, push_thread, p);
	if (e != 0) {
		if (p->fd >= 0)
			close(p->fd);
		if (follow)
			close(r->f.start_fd);
		return error_set(PS_EXIT_IO, "cannot start a thread: %s", strerror(e)), error_report();
	}
	int opened = run_open_conn(r) == 0;
	if (opened && follow)
		*rc = follow_job(r->conn, &r->f);
	else if (!opened)
		interrupt_set();	/* no host: the push is for nothing, stop it */
	/* The job ended (follow) or never will: its early pull is for nothing.
	 * Without a follower the pull goes on: the job is submitted after it. */
	if (follow || !opened)
		atomic_store(&r->early_stop, 1);
	if (follow)
		close(r->f.start_fd);
	pthread_join(th, NULL);
	if (!opened) {
		interrupt_clear();
		ret = error_report();
	} else if (p->ret < 0) {
		/* No job was started: the command never went. */
		ret = push_error(p);
	}
	free(p->msg);
	free(p->hint);
	return ret;
}

int run_push_beside_login(struct run *r, int pull)
{
	struct pusher p = { r, -1, 0, PS_EXIT_OK, NULL, NULL, pull ? PUSH_PULL : PUSH_ONLY };
	int rc = 0;
	return beside_login(r, &p, 0, &rc);
}

/*
 * Containers, not detached: the push runs in a thread while this one logs
 * in to the host and starts a remote shell that waits for the job's
 * command (a remote login may take seconds: shells' start-up files). The
 * command follows as soon as the image is in the registry and, for docker,
 * pulled on the host through the engine's socket, in the same round trip
 * as the follower and the results.
 */
int run_overlapped(struct run *r)
{
	struct pusher p = { r, -1, 0, PS_EXIT_OK, NULL, NULL, PUSH_SUBMIT };
	int fds[2], rc = 0, ret;

	r->deferred = 1;
	r->dir = remote_job_dir(r->cfg.remote.workdir, r->id);
	run_init_follow(r);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return error_set(PS_EXIT_IO, "cannot make a pipe: %s", strerror(errno)),
		       error_report();
	p.fd = fds[1];
	r->f.start_fd = fds[0];
	if ((ret = beside_login(r, &p, 1, &rc)) != 0)
		return ret;
	return run_after_follow(r, rc);
}
