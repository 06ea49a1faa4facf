#ifndef PYSTRIB_RESULTS_H
#define PYSTRIB_RESULTS_H

#include <stddef.h>
#include <stdint.h>

struct ssh_conn;

/*
 * Safe unpacking of a job's results and logs: a tar stream from the remote
 * host (untrusted: the cell wrote it) into a local directory.
 *
 * Every entry goes through libarchive's secure extraction
 * (ARCHIVE_EXTRACT_SECURE_SYMLINKS, _SECURE_NODOTDOT,
 * _SECURE_NOABSOLUTEPATHS) relative to the target directory, plus checks
 * of our own: only regular files, directories, symlinks and hard links;
 * no device, fifo or socket; a symlink's target must be relative, may use
 * ".." only as a leading prefix, and must stay inside the target; a hard
 * link must name a regular file extracted earlier from the same stream;
 * no entry may pass through or replace a symlink of the stream. Owners,
 * set-id bits and ACLs are never restored. A rejected entry is named in a
 * warning (log_warn / a "warning" event) and skipped: nothing lands
 * outside the target. Limits (entry count, bytes) make the whole unpack
 * fail with a "too large" error (PS_EXIT_REMOTE).
 *
 * Entries are streamed: the tar is never held in memory whole.
 */

struct results_limits {
	uint64_t max_bytes;	/* total of all entries' contents */
	uint64_t max_entries;	/* entries in the stream, rejected ones included */
};
#define RESULTS_MAX_BYTES (64ull << 30)
#define RESULTS_MAX_ENTRIES 1000000ull
#define RESULTS_LIMITS_INIT { RESULTS_MAX_BYTES, RESULTS_MAX_ENTRIES }

struct results_stats {
	uint64_t files;		/* regular files and hard links written */
	uint64_t dirs;		/* directories */
	uint64_t symlinks;	/* symlinks written */
	uint64_t bytes;		/* bytes of file contents written */
	uint64_t rejected;	/* entries skipped by a check (each warned about) */
};

/*
 * Unpacks the tar in data[0..len) / read from fd (until EOF) into the
 * directory dest, which is created (with parents) if missing. lim may be
 * NULL (the defaults); stats may be NULL. 0, or -1 with the error set: a
 * corrupt stream (PS_EXIT_REMOTE, with what was unpacked so far left in
 * place), a limit passed, dest not writable (PS_EXIT_USAGE).
 *
 * These run in the calling process and change its working directory while
 * they run (restored before they return): do not call them while another
 * thread depends on the working directory. They are the entry points of
 * the unit tests and the fuzzer.
 */
int results_unpack_mem(const void *data, size_t len, const char *dest,
		       const struct results_limits *lim, struct results_stats *stats);
int results_unpack_fd(int fd, const char *dest,
		      const struct results_limits *lim, struct results_stats *stats);

/*
 * The same, push-style, for bytes that arrive in pieces (a download): the
 * unpacking runs in a child process reading a pipe, so the caller's working
 * directory is untouched and the stream is never whole in memory.
 *
 *   results_unpack_begin(&u, dest, lim);
 *   results_unpack_write(u, chunk, n)...     (as the bytes arrive)
 *   results_unpack_finish(u, &stats);        (0 or -1; frees u)
 *
 * begin: 0 or -1. write: 0, or -1 once the unpacking has failed (its error
 * is then reported by finish). finish waits for the child and returns its
 * outcome; results_unpack_abort stops the child and frees u (after an
 * error elsewhere, for instance a dropped download). Both accept NULL.
 */
struct results_unpack;

/*
 * Starts the unpacker: a process forked now, before any credential is
 * read, which then runs every results_unpack_begin of this process in a
 * worker of its own (without it, begin forks this process itself). Its
 * copy of the environment is wiped: a password_env variable is not in it.
 * Call it first thing in a command that unpacks results; stop it (it
 * exits) at the end. 0 or -1 (PS_EXIT_IO). pid: for tests.
 */
int results_unpacker_start(void);
void results_unpacker_stop(void);
int results_unpacker_pid(void);

int results_unpack_begin(struct results_unpack **out, const char *dest,
			 const struct results_limits *lim);
int results_unpack_write(struct results_unpack *u, const void *data, size_t len);
int results_unpack_finish(struct results_unpack *u, struct results_stats *stats);
void results_unpack_abort(struct results_unpack *u);

/*
 * Fetches the job directory's results/ and logs/ from the remote host
 * (`tar -C JOBDIR -cf - results logs`, every word shell-quoted, JOBDIR may
 * start with "~/") and unpacks them into dest as above, streamed. A
 * missing results/ or logs/ is not an error (what exists is fetched); a
 * missing job directory is (PS_EXIT_REMOTE, "no job directory 'JOBDIR'
 * on 'HOST'"). Emits a "results" event with the path on success. 0 or a
 * negative ssh_result (SSH_R_DROPPED: the caller may reconnect and call
 * again; files already written are then overwritten).
 */
int results_fetch(struct ssh_conn *c, const char *jobdir, const char *dest,
		  const struct results_limits *lim, struct results_stats *stats);

/*
 * results_fetch, again after each dropped connection: says so on stderr
 * and reconnects with backoff (0.5 s doubling to 10 s) for up to
 * reconnect_timeout seconds (0: 600), as a follower does. Same results;
 * SSH_R_DROPPED once it gave up.
 */
int results_fetch_retry(struct ssh_conn *c, const char *jobdir, const char *dest,
			const struct results_limits *lim, struct results_stats *stats,
			int reconnect_timeout);

#endif
