#ifndef PYSTRIB_TARBALL_H
#define PYSTRIB_TARBALL_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

/*
 * Deterministic tar archives, optionally gzip-compressed: the writer behind
 * image layers and the Docker build-context tarball.
 *
 * The same list of entries gives the same bytes, whoever writes it and
 * whenever: entries are sorted by path (bytewise), every parent directory is
 * emitted before its children, mtime is 0, uid/gid 0, no user or group
 * names, modes are normalised (directories 0755, files 0755 or 0644,
 * symlinks 0777). The tar format is libarchive's restricted pax (plain
 * ustar headers, with a pax extended header only for what ustar cannot hold:
 * long or non-ASCII names, huge files), names stored as raw bytes. Gzip is
 * written here with zlib: level 6, no name, mtime 0, OS byte 255; the same
 * zlib gives the same bytes.
 *
 * File contents are streamed from disk in chunks while writing, so a layer
 * is never held in memory; a file that changes size while being read is an
 * error rather than a silently inconsistent layer.
 */

enum tar_kind { TAR_DIR, TAR_FILE, TAR_SYMLINK };

struct tar_entry {
	char *path;		/* in the archive: relative, '/'-separated, no trailing '/' */
	enum tar_kind kind;
	unsigned mode;		/* normalised permission bits */
	char *source;		/* TAR_FILE: the local file streamed in; NULL: data */
	char *data;		/* TAR_FILE without source: the bytes (owned) */
	uint64_t size;		/* TAR_FILE: content length */
	char *link;		/* TAR_SYMLINK: the target, stored as is */
};

struct tar_list {
	struct tar_entry *v;
	size_t n, alloc;
};

#define TAR_LIST_INIT { NULL, 0, 0 }

void tar_list_init(struct tar_list *l);
/* Frees the entries and their contents; the list is empty after. */
void tar_list_release(struct tar_list *l);

/*
 * Adders. Paths are copied; a leading "./" or "/" and a trailing "/" are
 * dropped. `executable` selects 0755 over 0644. add_file records the local
 * file `source` of `size` bytes, read only when the list is written.
 */
void tar_list_add_dir(struct tar_list *l, const char *path);
void tar_list_add_file(struct tar_list *l, const char *path, const char *source,
		       uint64_t size, int executable);
void tar_list_add_data(struct tar_list *l, const char *path, const void *data,
		       size_t len, int executable);
void tar_list_add_symlink(struct tar_list *l, const char *path, const char *target);

/*
 * Sorts the list, adds the missing parent directories, and drops exact
 * duplicate directories. Two non-directory entries with the same path, or
 * a path that is both a directory and a file, or a path with an empty,
 * "." or ".." component, are an error (PS_EXIT_USAGE). 0 or -1. Called by
 * tarball_write; harmless to call twice.
 */
int tar_list_finish(struct tar_list *l);

struct tarball_result {
	char digest[DIGEST_LEN];	/* sha256 of the bytes written (compressed if gzip) */
	char diff_id[DIGEST_LEN];	/* sha256 of the uncompressed tar */
	uint64_t size;			/* bytes written to fd */
	uint64_t tar_size;		/* bytes of the uncompressed tar */
};

/*
 * Writes the entries of l (finished first) as a tar, gzip-compressed when
 * `gzip` is set, to the file descriptor fd, streaming. Fills res. 0, or -1
 * with the error set (a source file that cannot be read or changed while
 * being read, a write error on fd, interrupted). fd is not closed.
 */
int tarball_write(struct tar_list *l, int fd, int gzip, struct tarball_result *res);

#endif
