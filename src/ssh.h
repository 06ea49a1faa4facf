#ifndef PYSTRIB_SSH_H
#define PYSTRIB_SSH_H

#include <stddef.h>

#include "buf.h"
#include "config.h"

/*
 * One SSH connection (libssh) to a remote host: host key verification,
 * authentication, commands with streamed output, file upload and download.
 *
 * Functions return 0 on success or one of the negative codes below, with
 * the error recorded (error.h): exit kind PS_EXIT_REMOTE for everything
 * about the connection or the remote host, PS_EXIT_IO when a local file
 * (one to upload, known_hosts) cannot be read or written,
 * PS_EXIT_INTERRUPTED when an interrupt was requested (interrupt_set),
 * PS_EXIT_TIMEOUT when a deadline passed. Callers
 * that only care about success test `< 0`.
 *
 * Commands are strings for the remote shell: build them with shquote.h.
 */
enum ssh_result {
	SSH_R_FAILED = -1,		/* any other failure */
	SSH_R_UNREACHABLE = -2,		/* no TCP connection or no SSH handshake */
	SSH_R_HOSTKEY_UNKNOWN = -3,	/* host not in known_hosts (not trusted) */
	SSH_R_HOSTKEY_CHANGED = -4,	/* known_hosts has another key: refused, always */
	SSH_R_AUTH = -5,		/* every authentication method refused */
	SSH_R_DROPPED = -6,		/* the connection went away: reconnect and retry */
	SSH_R_TIMEOUT = -7,		/* the deadline passed (command cancelled) */
	SSH_R_INTERRUPTED = -8,		/* `interrupted` was set (command cancelled) */
	SSH_R_TOOBIG = -9,		/* captured output passed its cap */
};

/*
 * Where to connect. Every field may be NULL/0; what is unset comes from
 * ~/.ssh/config for `host` (HostName, User, Port, IdentityFile, ProxyJump,
 * ProxyCommand, UserKnownHostsFile...), then libssh's defaults. What is set
 * here wins over ~/.ssh/config.
 */
struct ssh_target {
	char *host;		/* a name, address or ~/.ssh/config alias */
	int port;		/* 0: from ~/.ssh/config, else 22 */
	char *user;		/* NULL: from ~/.ssh/config, else the local user */
	char *identity;		/* private key file, tried after the agent */
	char *known_hosts;	/* NULL: ~/.ssh/known_hosts (or ssh config's) */
	int connect_timeout;	/* seconds; 0: SSH_DEFAULT_CONNECT_TIMEOUT */
	int keepalive;		/* seconds between keepalives; 0: the default */
	char *label;		/* NAME of [remote.NAME], for hints; NULL: [remote] */
};
#define SSH_TARGET_INIT { 0 }
#define SSH_DEFAULT_CONNECT_TIMEOUT 15
#define SSH_DEFAULT_KEEPALIVE 15

/*
 * Fills t from the resolved [remote] settings: host, user, identity,
 * known_hosts (with "~/" expanded), and port only when it was set somewhere
 * (a port left at its built-in default lets ~/.ssh/config decide). 0, or -1
 * (PS_EXIT_USAGE) when no host is configured.
 */
int ssh_target_from_config(struct ssh_target *t, const struct config *cfg);

/*
 * Parses "[USER@]HOST[:PORT]" (IPv6 as "[::1]:22") into t, replacing its
 * host and, when given, user and port; other fields are kept. 0 or -1
 * (PS_EXIT_USAGE).
 */
int ssh_target_parse(struct ssh_target *t, const char *dest);

void ssh_target_release(struct ssh_target *t);

/* Flags of ssh_conn_open. */
enum {
	/*
	 * An unknown host's key is recorded in known_hosts and accepted
	 * (`--accept-new-host-key`, `doctor --trust-host`). A CHANGED key is
	 * refused whatever the flags.
	 */
	SSH_ACCEPT_NEW_HOSTKEY = 1 << 0,
};

struct ssh_conn;

/*
 * Connects, verifies the host key and logs in. The target is copied. On
 * success *out is a new connection (free with ssh_conn_free). Failures:
 * SSH_R_UNREACHABLE (names host:port and the reason), SSH_R_HOSTKEY_UNKNOWN
 * (with the key's SHA256 fingerprint and the command that trusts it),
 * SSH_R_HOSTKEY_CHANGED, SSH_R_AUTH (lists what was tried),
 * SSH_R_INTERRUPTED, SSH_R_FAILED.
 */
int ssh_conn_open(struct ssh_conn **out, const struct ssh_target *t, int flags);

/*
 * Closes the connection and opens it again with the same target (after
 * SSH_R_DROPPED). The host key must now be known: never accepts a new one.
 * Same results as ssh_conn_open; on failure the connection stays closed
 * and may be reconnected again later.
 */
int ssh_conn_reconnect(struct ssh_conn *c);

/* Disconnects and frees. NULL is fine. */
void ssh_conn_free(struct ssh_conn *c);

/* "user@host:port" as connected (after ~/.ssh/config), for messages. */
const char *ssh_conn_name(const struct ssh_conn *c);

/* The host key's "SHA256:..." fingerprint, once connected. */
const char *ssh_conn_fingerprint(const struct ssh_conn *c);

/*
 * Receives output as it arrives: fd is 1 (stdout) or 2 (stderr), data is
 * not NUL-terminated. Chunks keep the order in which they arrived across
 * both streams. Return 0 to go on, or -1 (after error_set) to stop: the
 * remote command is then signalled and the call returns SSH_R_FAILED.
 */
typedef int (*ssh_output_fn)(void *ctx, int fd, const char *data, size_t len);

struct ssh_exec_opts {
	/* Standard input: in[0..in_len) then, if in_fd >= 0, in_fd until EOF,
	 * then EOF. With neither, the command's stdin is empty. */
	const void *in;
	size_t in_len;
	int in_fd;		/* -1: none (SSH_EXEC_OPTS_INIT sets it) */

	ssh_output_fn on_output;	/* NULL: output is discarded */
	void *ctx;

	/*
	 * Called about every `tick` seconds (default 1) while the command
	 * runs, from the same thread; return -1 (after error_set) to cancel
	 * as on_output does.
	 */
	int (*on_tick)(void *ctx);
	double tick;

	/* now_monotonic() time after which the command is cancelled; 0: none. */
	double deadline;
};
#define SSH_EXEC_OPTS_INIT { NULL, 0, -1, NULL, NULL, NULL, 0, 0 }

/*
 * Runs `command` in the remote user's shell and waits for it to end, with
 * stdout and stderr given to o->on_output as they arrive (no busy loop;
 * keepalives are sent while waiting). o may be NULL. On 0, *exit_status is
 * the command's exit status (128+N when killed by signal N, 255 when the
 * server sent none). A command that ends only when cancelled (a follower)
 * returns SSH_R_INTERRUPTED, SSH_R_TIMEOUT or SSH_R_FAILED (callback); a
 * lost connection returns SSH_R_DROPPED.
 */
int ssh_conn_exec(struct ssh_conn *c, const char *command,
		  const struct ssh_exec_opts *o, int *exit_status);

/*
 * Opens a stream to the UNIX socket at `path` on the remote host (OpenSSH's
 * direct-streamlocal: no shell runs, so no login scripts are waited for),
 * sends the input of o (never followed by EOF: the server must close the
 * stream when it has answered, as an HTTP/1.0 server does) and hands what
 * comes back to o->on_output (fd 1) until the far end closes. The host's sshd must allow it
 * (AllowStreamLocalForwarding, its default) and the socket must be open to
 * the login user. 0, or negative as for ssh_conn_exec; a socket that
 * cannot be opened is SSH_R_FAILED with sshd's reason.
 */
int ssh_conn_unix_stream(struct ssh_conn *c, const char *path, const struct ssh_exec_opts *o);

/*
 * A long-lived stream to the UNIX socket at `path` on the remote host
 * (direct-streamlocal, as ssh_conn_unix_stream), for a conversation in
 * both directions at once (a session's hub.sock, docs/sessions.md). One
 * stream at a time per connection; free it before ssh_conn_reconnect.
 */
struct ssh_stream;
/* Opens it: 0 and *out (ssh_stream_free), or SSH_R_FAILED / SSH_R_DROPPED. */
int ssh_stream_open(struct ssh_conn *c, const char *path, struct ssh_stream **out);
/* Writes all of data, waiting for the remote window. 0 or SSH_R_DROPPED. */
int ssh_stream_write(struct ssh_stream *st, const void *data, size_t len);
/*
 * Reads what has come, waiting up to timeout_ms for it, or less when
 * wake_fd (-1: none) becomes readable or a signal arrives (keepalives are
 * sent meanwhile). Returns the bytes read (> 0), 0 when nothing came,
 * SSH_R_FAILED once the far end closed the stream (ssh_stream_eof) or
 * SSH_R_DROPPED when the connection went away (error set for both).
 */
int ssh_stream_read(struct ssh_stream *st, void *buf, size_t len, int timeout_ms, int wake_fd);
/* 1 once the far end closed the stream. */
int ssh_stream_eof(const struct ssh_stream *st);
/* Closes and frees. NULL is fine. */
void ssh_stream_free(struct ssh_stream *st);

/*
 * Runs `command` with optional stdin data and captures its output: stdout
 * is appended to out, stderr to err (either may be NULL: discarded). The
 * buffers' own caps apply (buf_init(b, max)); a buffer without a cap is
 * limited to SSH_CAPTURE_MAX. Past a cap: SSH_R_TOOBIG, command cancelled.
 */
#define SSH_CAPTURE_MAX (16u << 20)
int ssh_conn_capture(struct ssh_conn *c, const char *command,
		     const void *in, size_t in_len,
		     struct buf *out, struct buf *err, int *exit_status);

/*
 * Like ssh_conn_capture, for commands expected to succeed: a non-zero
 * exit becomes an error by ssh_command_failed (program names the command
 * for the message, "docker"). 0 or negative.
 */
int ssh_conn_run(struct ssh_conn *c, const char *command, const char *program,
		 struct buf *out);

/*
 * Writes data (or the local file) to remote_path atomically: the bytes
 * go to a temporary file beside it, which is renamed over remote_path only
 * once complete, so readers see the old file or the whole new one. mode
 * is the file's permission bits (0644). remote_path may start with "~/";
 * its directory must exist. A full remote disk is reported as such.
 */
int ssh_conn_upload(struct ssh_conn *c, const char *remote_path,
		    const void *data, size_t len, unsigned mode);
int ssh_conn_upload_file(struct ssh_conn *c, const char *remote_path,
			 const char *local_path, unsigned mode);

/*
 * Runs `command` and streams its stdout to write_fn as it arrives (a
 * results tar, a log); stderr is kept (capped) for the error message.
 * write_fn returns 0, or -1 after error_set to stop. A non-zero exit is an
 * error made by ssh_command_failed(program). 0 or negative.
 */
int ssh_conn_download(struct ssh_conn *c, const char *command, const char *program,
		      int (*write_fn)(void *ctx, const void *data, size_t len),
		      void *ctx);

/*
 * Records the error for a remote command that exited with `status` and
 * printed `err` on stderr (may be NULL), and returns SSH_R_FAILED:
 * 127 / "not found" -> "remote host 'H' has no 'PROGRAM'" with a hint;
 * "No space left on device" -> the remote disk is full; otherwise the
 * status and the last line of stderr. Kind PS_EXIT_REMOTE.
 */
int ssh_command_failed(const struct ssh_conn *c, const char *program,
		       int status, const char *err);

#endif
