#ifndef PYSTRIB_REGISTRY_H
#define PYSTRIB_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "digest.h"

/*
 * A client of one registry's HTTP API (OCI distribution spec), over
 * libcurl, with one connection kept alive across requests.
 *
 * Where: the registry named in [registry] url is reached with that URL's
 * scheme and [registry] ca_file / insecure / credentials; any other host
 * (a base image elsewhere) over https, or http when it is a loopback
 * address, with credentials from the docker config. Plain http:// to a
 * non-loopback host is refused unless [registry] insecure is true. TLS is
 * verified against the system CAs or ca_file.
 *
 * Authentication: anonymous first; a 401 with a Basic challenge brings the
 * credentials; a Bearer challenge fetches a token from its realm for the
 * request's scope ("repository:REPO:pull,push"), cached per scope and
 * fetched again when the registry answers 401 to it.
 *
 * Failures: connection errors, dropped connections and 5xx answers are
 * retried with backoff (0.3 s, doubling, 4 attempts). A failed upload is
 * resumed from the offset the registry reports, else restarted. Every
 * body read from the network is capped. Errors are PS_EXIT_REGISTRY (a
 * local file that cannot be read or written: PS_EXIT_IO) with one line
 * saying what failed and a hint, never holding a secret.
 *
 * Blobs up to 32 MiB go up in one PUT, larger ones in PATCH requests of
 * 32 MiB; PYSTRIB_REGISTRY_CHUNK (bytes, for tests) overrides both.
 */
struct registry;

/* Opens a client for `host` ("127.0.0.1:5000", "docker.io"). 0 or -1. */
int registry_open(struct registry **out, const struct config *cfg, const char *host);
void registry_free(struct registry *r);

/* "host[:port]" as the user's side reaches it. */
const char *registry_host(const struct registry *r);
/* 1 when the client carries credentials (from where: *origin). */
int registry_has_credentials(const struct registry *r, const char **origin);
/* Requests sent so far (for -v and the benchmark). */
unsigned registry_requests(const struct registry *r);
/*
 * 1 when the registry asked for authentication and accepted the user's
 * credentials (sent with Basic, or traded for a token) at least once.
 */
int registry_authenticated(const struct registry *r);

/*
 * GET /v2/ with authentication: 0 when the registry accepts us (with the
 * credentials, if any), -1 with the error set (unreachable, refused, not
 * a registry).
 */
int registry_ping(struct registry *r);

/*
 * GET a manifest (image manifest or index, Docker schema 2 or OCI) by tag
 * or digest. Fills body (capped at 4 MiB), *media_type (caller frees) and
 * digest (computed from the bytes; checked against a digest reference).
 * A missing manifest is an error naming repo:ref. 0 or -1.
 */
int registry_get_manifest(struct registry *r, const char *repo, const char *ref,
			  struct buf *body, char **media_type, char digest[DIGEST_LEN]);

/* HEAD a blob: 1 present, 0 absent, -1 error. */
int registry_blob_exists(struct registry *r, const char *repo, const char *digest);

/*
 * HEAD a manifest by digest: 1 present, 0 absent, -1 error. A registry
 * takes a manifest only when it holds every blob it names, so 1 also says
 * those are there.
 */
int registry_manifest_exists(struct registry *r, const char *repo, const char *digest);

/* GET a blob into out (capped at out->max, or 16 MiB), verified against digest. 0 or -1. */
int registry_get_blob(struct registry *r, const char *repo, const char *digest, struct buf *out);

/*
 * GET a blob of the given size (its descriptor's; more is refused) into the
 * file at path (created), verified. 0 or -1, and then no file.
 */
int registry_get_blob_file(struct registry *r, const char *repo, const char *digest,
			   uint64_t size, const char *path);

/*
 * Cross-repository mount of digest from repository `from` (same registry):
 * 1 mounted, 0 the registry declined (nothing left behind), -1 error.
 */
int registry_mount_blob(struct registry *r, const char *repo, const char *digest,
			const char *from);

/* Called as bytes go out: sent so far, of total. */
typedef void registry_progress_fn(void *data, uint64_t sent, uint64_t total);

/*
 * Uploads the file at path (size bytes, digest) to repo, streamed from the
 * file (never held in memory): one PUT after the POST, or chunked PATCH
 * requests past the chunk threshold. 0 or -1.
 */
int registry_upload_file(struct registry *r, const char *repo, const char *path,
			 const char *digest, uint64_t size, registry_progress_fn *fn, void *data);

/* Uploads a small blob held in memory (an image config). 0 or -1. */
int registry_upload_bytes(struct registry *r, const char *repo, const void *data, size_t len,
			  const char *digest);

/*
 * PUT a manifest under ref (a tag or its digest) with the given media
 * type. 0 or -1 (the registry's error code, like MANIFEST_BLOB_UNKNOWN,
 * in the message).
 */
int registry_put_manifest(struct registry *r, const char *repo, const char *ref,
			  const char *media_type, const void *data, size_t len);

#endif
