#ifndef PYSTRIB_ENGINE_H
#define PYSTRIB_ENGINE_H

#include <stdatomic.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "progress.h"
#include "ssh.h"

/*
 * The remote docker engine's HTTP API, reached through its UNIX socket
 * over an SSH stream (ssh_conn_unix_stream): no remote shell, so none of
 * the login scripts a remote command waits for. `run` uses it to have the
 * image pulled while the job's own remote shell is still starting; the
 * job script then finds it there. Only what that needs.
 */

/*
 * The engine socket to use for remote r: [remote] docker_socket when the
 * runtime is docker and it is set, else NULL.
 */
const char *engine_socket(const struct remote_config *r);

/* Who the engine logs in to the registry as; NULL fields: anonymous. */
struct engine_auth {
	const char *username;
	const char *password;
	const char *server;	/* the registry's host[:port] */
};

/*
 * Has the engine at `socket` pull `image` (a reference with its digest,
 * as the host reaches the registry) and waits until it is there or the
 * engine gave up, at most until `deadline` (now_monotonic() time, 0: none)
 * and only while *stop (when given) stays 0: another thread may set it.
 * The engine's pull events are shown as they come (pull_progress: a bar
 * on a terminal, a line per layer pulled on a pipe, {"event":"pull"}
 * with --json), and the pull's end in one line.
 * 0, or a negative ssh_result with the error set: the engine's own
 * message when it answered.
 */
int engine_pull(struct ssh_conn *c, const char *socket, const char *image,
		const struct engine_auth *auth, double deadline, const atomic_int *stop);

/* GET /_ping: 0 when an engine answers at `socket`, else negative (error set). */
int engine_ping(struct ssh_conn *c, const char *socket, double deadline);

/*
 * The request engine_pull sends (HTTP/1.0, so that the answer ends when
 * the engine closes the stream), appended to out. With credentials it
 * holds the password: wipe it after use.
 */
void engine_pull_request(struct buf *out, const char *image, const struct engine_auth *auth);

/*
 * One of the engine's pull messages ({"status":"Downloading","id":"3e63eb97b22f",
 * "progressDetail":{"current":N,"total":N}}) as layer progress: 0 with *ev
 * set (ev->id points into j), or -1 when it is not about a layer (the
 * "Pulling from", "Digest:" and "Status:" lines, retries, an id that is
 * not hex).
 */
struct engine_pull_event {
	const char *id;
	enum pull_state state;
	uint64_t current, total;	/* 0 when the message has none */
};
int engine_pull_event(const json_t *j, struct engine_pull_event *ev);

/*
 * Reads the engine's answer as it streams in: a status line, headers,
 * then one JSON message per line. Feed every piece with
 * engine_reply_feed; engine_reply_end then gives 0 when the request
 * succeeded (a 2xx status, no error in the stream), or -1 with the
 * engine's reason in `why`. on_json, when set, sees every JSON object of
 * the body as it comes (it must not keep it).
 */
struct engine_reply {
	int status;		/* HTTP status, 0 until the status line came */
	int in_body;
	int overlong;		/* the line being read passed the cap: dropped */
	struct buf line;	/* the line being read (capped) */
	struct buf why;		/* the first error the engine gave */
	json_t *json;		/* the first JSON object of the body, or NULL */
	void (*on_json)(void *ctx, const json_t *j);
	void *json_ctx;
};
void engine_reply_init(struct engine_reply *r);
void engine_reply_feed(struct engine_reply *r, const char *data, size_t len);
int engine_reply_end(struct engine_reply *r);
void engine_reply_release(struct engine_reply *r);

/*
 * Containers, for `run`'s launch through the engine (no remote shell at
 * all): create `name` from the API's create body `config`, start it, kill
 * it (SIGKILL, at once), remove it (forced). 0 or a negative ssh_result
 * with the error set; *id (caller frees) is the new container's id.
 */
int engine_create(struct ssh_conn *c, const char *socket, const char *name,
		  const json_t *config, char **id);
int engine_start(struct ssh_conn *c, const char *socket, const char *id);
int engine_kill(struct ssh_conn *c, const char *socket, const char *id);
/* The container's main process as the host numbers it (0: not running). */
int engine_pid(struct ssh_conn *c, const char *socket, const char *id, long *pid);
int engine_remove(struct ssh_conn *c, const char *socket, const char *id);

/*
 * Runs the argument vector cmd (a JSON array) in the running container id
 * (docker exec) and hands its stdout and stderr to o->on_output as they
 * come, until it ends; o's deadline and on_tick apply, its input does not.
 * 0 with *exit_code set (-1 unknown), or a negative ssh_result with the
 * error set (SSH_R_DROPPED: the connection went).
 */
int engine_exec(struct ssh_conn *c, const char *socket, const char *id, const json_t *cmd,
		const struct ssh_exec_opts *o, int *exit_code);

/*
 * The answer of an exec's start: an HTTP head, then the process's output
 * as frames (8 bytes: the stream, 1 stdout or 2 stderr, three zero bytes,
 * the length as 4 bytes big-endian; then that many bytes), handed to `out`
 * with fd 1 or 2. An answer that is not a stream (an error) stays in
 * head: raw is 0.
 */
struct engine_mux {
	struct engine_reply head;
	int raw;		/* in the frames */
	unsigned char hdr[8];
	size_t hlen;
	uint32_t left;		/* bytes still to come of the current frame */
	int fd;
	ssh_output_fn out;
	void *ctx;
};
void engine_mux_init(struct engine_mux *m, ssh_output_fn out, void *ctx);
int engine_mux_feed(struct engine_mux *m, const char *data, size_t len);
void engine_mux_release(struct engine_mux *m);

#endif
