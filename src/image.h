#ifndef PYSTRIB_IMAGE_H
#define PYSTRIB_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "context.h"
#include "digest.h"

/*
 * The image model, without the network: parsing a base image's manifest,
 * index (manifest list) and config as the registry sent them, and writing
 * the new config and manifest with the context's two layers on top.
 *
 * Everything parsed here is untrusted input: bodies are size-checked,
 * every field's type is checked, digests must be well-formed, counts are
 * capped, and a failure is a PS_EXIT_REGISTRY error naming the image
 * (`what`, the base reference as the user wrote it) and what is wrong.
 * Output JSON is compact with sorted keys, so the same inputs give the same
 * bytes and the same digests.
 */

#define MEDIA_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MEDIA_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MEDIA_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
#define MEDIA_DOCKER_LAYER "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define MEDIA_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MEDIA_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MEDIA_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MEDIA_OCI_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"

/* Caps on what a base image may hold. */
#define IMAGE_JSON_MAX (4u << 20)	/* a manifest, an index */
#define IMAGE_CONFIG_MAX (8u << 20)	/* an image config */
#define IMAGE_MAX_LAYERS 1000
#define IMAGE_MAX_MANIFESTS 1000	/* entries of an index */

/* What a manifest body is. */
enum manifest_kind {
	MANIFEST_IMAGE,		/* Docker schema 2 or OCI image manifest */
	MANIFEST_INDEX,		/* Docker manifest list or OCI index */
};

/*
 * Which kind the body is, from the Content-Type the registry sent
 * (media_type, may be NULL or empty) or else the body's "mediaType" and
 * shape. Docker schema 1 and anything unknown: -1 with the error set.
 */
int image_manifest_kind(const char *media_type, const char *body, size_t len,
			const char *what, enum manifest_kind *out);

/*
 * Picks the manifest for `platform` ("os/arch[/variant]") from an index
 * body. Entries with platform unknown/unknown (attestations) are skipped;
 * "x86_64" means amd64 and "aarch64" arm64; with no variant asked for,
 * an entry with no variant (or the architecture's usual one) is preferred.
 * Fills digest and *media_type (caller frees). No match: -1 with an error
 * listing the platforms the index has, and a hint to set [image] platform.
 */
int image_index_pick(const char *body, size_t len, const char *platform, const char *what,
		     char digest[DIGEST_LEN], char **media_type);

/* A content descriptor: what a manifest says about one blob. */
struct descriptor {
	char *media_type;
	char digest[DIGEST_LEN];
	uint64_t size;
	int foreign;		/* non-distributable: never pushed nor mounted */
};

struct image_manifest {
	int oci;		/* 1: OCI media types; 0: Docker schema 2 */
	struct descriptor config;
	struct descriptor *layers;
	size_t nlayers;
	void *layers_json;	/* private: the layer descriptors as sent (json_t *) */
};

/*
 * Parses an image manifest (Docker schema 2 or OCI). 0, or -1 with the
 * error set; release m with image_manifest_release either way.
 */
int image_manifest_parse(struct image_manifest *m, const char *body, size_t len,
			 const char *what);
void image_manifest_release(struct image_manifest *m);

/*
 * Writes the new image config into out: the base config (base, len) with
 * the layers' diff_ids appended to rootfs.diff_ids, a history entry for
 * each layer, WorkingDir, Env (the base's, with ctx->env replacing same
 * named variables), Cmd (context_cmd), the labels
 * org.opencontainers.image.revision and .created (with a revision) and
 * .source (with a source), and "created" set to ctx->created (the commit
 * time, so it is reproducible). The base must list exactly base_layers
 * diff_ids. layers[0..nlayers) are the layers pushed on top, in order.
 * When platform is given and the base config says another os/architecture,
 * a warning. 0, or -1 with the error set.
 */
int image_config_build(struct buf *out, const char *base, size_t len, size_t base_layers,
		       const struct context *ctx, const struct layer *const *layers,
		       size_t nlayers, const char *platform, const char *what);

/*
 * Writes the new manifest into out: the same family of media types as
 * the base (Docker schema 2 or OCI), the config descriptor, the base's
 * layer descriptors as they were, then layers[0..nlayers). *media_type is
 * the manifest's media type (a constant).
 */
int image_manifest_build(struct buf *out, const struct image_manifest *base,
			 const char *config_digest, uint64_t config_size,
			 const struct layer *const *layers, size_t nlayers,
			 const char **media_type);

#endif
