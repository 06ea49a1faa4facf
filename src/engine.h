#ifndef PYSTRIB_ENGINE_H
#define PYSTRIB_ENGINE_H

#include <stdatomic.h>
#include <stddef.h>

#include "buf.h"
#include "config.h"
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
 * Reads the engine's answer as it streams in: a status line, headers,
 * then one JSON message per line. Feed every piece with
 * engine_reply_feed; engine_reply_end then gives 0 when the pull
 * succeeded, or -1 with the engine's reason in `why`.
 */
struct engine_reply {
	int status;		/* HTTP status, 0 until the status line came */
	int in_body;
	int overlong;		/* the line being read passed the cap: dropped */
	struct buf line;	/* the line being read (capped) */
	struct buf why;		/* the first error the engine gave */
};
void engine_reply_init(struct engine_reply *r);
void engine_reply_feed(struct engine_reply *r, const char *data, size_t len);
int engine_reply_end(struct engine_reply *r);
void engine_reply_release(struct engine_reply *r);

#endif
