#ifndef PYSTRIB_PUSH_H
#define PYSTRIB_PUSH_H

#include "config.h"
#include "context.h"

/*
 * Turns a built context into an image in the registry, with no Docker
 * daemon: resolves [image] base (picking [image] platform from an index),
 * appends the project layer (when ctx->project.size > 0) and the cell
 * layer, writes the new config (diff_ids, history, WorkingDir, Env, Cmd,
 * OCI labels from ctx) and manifest, and pushes only the blobs the
 * registry lacks (HEAD, cross-repository mount, streaming upload), the
 * manifest last and the tag after it.
 *
 * This is the contract `push` and `run` share; src/push.c implements it.
 */

struct pushed_image {
	char *registry;		/* "127.0.0.1:5000", "ghcr.io" (as the user's side reaches it) */
	char *repository;	/* "team/cells" */
	char *tag;		/* "cell-1a2b3c4d" */
	char *digest;		/* the manifest's "sha256:..." */
	char *reference;	/* "REGISTRY/REPO:TAG@sha256:..." (printed by push) */
	char *pinned;		/* "REGISTRY/REPO@sha256:..." (what a runtime pulls) */
	char **layers;		/* the image's layer digests, base first (NULL-terminated) */
	unsigned uploaded_blobs;
	unsigned long long uploaded_bytes;
};

/*
 * Pushes ctx as [registry] repository:tag. tag NULL: a tag derived from
 * `name`, the cell file's path: its base name without ".py", lower-cased,
 * characters a tag cannot hold turned into '-', then '-' and the first 12
 * hex digits of the manifest digest ("train-1a2b3c4d5e6f"). The same cell,
 * context and base give the same tag, so pushing again changes nothing;
 * any change gives a new tag and never moves an old one. name NULL:
 * "cell". Progress goes to stderr on a TTY (and with -v), {"event":"blob"}
 * lines with --json. On success fills *out (release it with
 * pushed_image_release) and emits {"event":"pushed"}. 0, or -1 with the
 * error set: PS_EXIT_REGISTRY for anything the registry did or did not do,
 * PS_EXIT_USAGE for a bad reference or missing setting, PS_EXIT_IO for a
 * local file, PS_EXIT_INTERRUPTED. On failure nothing was tagged.
 */
int push_image_as(const struct config *cfg, const struct context *ctx,
		  const char *tag, const char *name, struct pushed_image *out);

void pushed_image_release(struct pushed_image *p);

/* The default tag for name and a manifest digest, as above. Caller frees. */
char *push_default_tag(const char *name, const char *digest);

#endif
