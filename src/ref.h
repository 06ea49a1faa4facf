#ifndef PYSTRIB_REF_H
#define PYSTRIB_REF_H

/*
 * Image references, as docker and the OCI distribution spec write them:
 *
 *   [REGISTRY/]REPOSITORY[:TAG][@sha256:HEX]
 *
 * REGISTRY is the first component when it holds a '.' or a ':' or is
 * "localhost" (a host, host:port or [IPv6]:port); otherwise the image is
 * on Docker Hub ("docker.io"), where a one-component repository lives in
 * "library/". A reference with neither tag nor digest means ":latest".
 * Parsing is strict: repository components are [a-z0-9]+ joined by '.',
 * '_', '__' or dashes; tags are [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
 */
struct image_ref {
	char *registry;		/* "docker.io", "127.0.0.1:5000" */
	char *repository;	/* "library/debian", "team/cells" */
	char *tag;		/* "latest" when neither tag nor digest was given; NULL with a digest only */
	char *digest;		/* "sha256:..." or NULL */
};

/*
 * Parses s into r (normalised as above). 0, or -1 with a PS_EXIT_USAGE
 * error naming s and what is wrong with it; r is untouched on failure.
 * Release r with image_ref_release.
 */
int image_ref_parse(struct image_ref *r, const char *s);
void image_ref_release(struct image_ref *r);

/* The canonical "REGISTRY/REPO[:TAG][@DIGEST]". Caller frees. */
char *image_ref_string(const struct image_ref *r);

/* 1 if tag is a valid tag, 1 if repo a valid repository path, else 0. */
int ref_tag_valid(const char *tag);
int ref_repository_valid(const char *repo);
/* 1 if s is a valid registry host: a DNS name or IPv4 or [IPv6], with an optional :port. */
int ref_registry_valid(const char *s);

/*
 * The host the HTTP API of `registry` lives at: "registry-1.docker.io"
 * for "docker.io", registry itself otherwise. Not a copy.
 */
const char *ref_api_host(const char *registry);

/*
 * The reference a remote host pulls for the image pushed as
 * "REPOSITORY@DIGEST": "PULL_REGISTRY/REPOSITORY@DIGEST" when the host
 * reaches the registry by another name ([remote] pull_registry, which may
 * carry a scheme and trailing slashes), else pinned as it is. Caller frees.
 */
char *ref_pull_reference(const char *pinned, const char *repository, const char *digest,
			 const char *pull_registry);

/* The registry part of "HOST[:PORT]/REPO...", what a login names. Caller frees. */
char *ref_registry_part(const char *ref);

/*
 * "REGISTRY/REPO@DIGEST" of "REGISTRY/REPO:TAG@DIGEST": the form every
 * tool pulls (skopeo and containers/image refuse a tag beside a digest).
 * A reference without a digest, or one that does not parse, comes back
 * as it is. Caller frees.
 */
char *ref_pinned(const char *reference);

#endif
