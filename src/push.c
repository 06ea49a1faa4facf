#include <ctype.h>
#include <jansson.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "image.h"
#include "log.h"
#include "progress.h"
#include "push.h"
#include "ref.h"
#include "registry.h"

/*
 * The order of a push is what makes it safe to interrupt: every blob
 * first (the base's layers, ours, the config), then the manifest by its
 * digest, and the tag only after the registry has accepted the manifest.
 * A push that stops anywhere leaves at most untagged blobs, which the
 * next push finds with HEAD and does not send again.
 */

struct pusher {
	const struct config *cfg;
	const struct context *ctx;
	struct registry *reg;		/* where the image goes */
	struct registry *base_reg;	/* where the base is (reg when the same) */
	struct image_ref base;
	const char *repo;
	char *host;
	int same_registry;
	struct image_manifest manifest;	/* the base's */
	struct buf base_config;
	const struct layer *layers[2];	/* ours, project first */
	size_t nlayers;
	struct progress prog;
	unsigned uploaded_blobs;
	unsigned long long uploaded_bytes;
};

/* "host[:port]" of a registry URL (scheme and any path dropped). */
static char *url_host(const char *url)
{
	const char *p = strstr(url, "://");
	p = p ? p + 3 : url;
	return xstrndup(p, strcspn(p, "/"));
}

char *push_default_tag(const char *name, const char *digest)
{
	const char *base = name ? strrchr(name, '/') : NULL;
	const char *hex = strchr(digest, ':');
	struct buf t = BUF_INIT;
	size_t n;

	base = base ? base + 1 : (name ? name : "cell");
	n = strlen(base);
	if (n >= 3 && !strcmp(base + n - 3, ".py"))
		n -= 3;
	if (n > 100)
		n = 100;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)base[i];
		c = (unsigned char)tolower(c);
		buf_addch(&t, isalnum(c) || c == '_' || c == '.' || c == '-' ? (char)c : '-');
	}
	if (!t.len || !(isalnum((unsigned char)t.ptr[0]) || t.ptr[0] == '_')) {
		char *s = buf_detach(&t, NULL);
		buf_addf(&t, "cell%s%s", *s ? "-" : "", s);
		free(s);
	}
	buf_addf(&t, "-%.12s", hex ? hex + 1 : digest);
	return buf_detach(&t, NULL);
}

static int check_interrupt(void)
{
	if (interrupt_requested())
		return error_set(PS_EXIT_INTERRUPTED, "interrupted; nothing was tagged");
	return 0;
}

/* The base's image manifest: through an index when it is one. Fills p->manifest. */
static int resolve_manifest(struct pusher *p)
{
	struct buf body = BUF_INIT;
	char *mt = NULL, *ref = xstrdup(p->base.digest ? p->base.digest : p->base.tag);
	char dg[DIGEST_LEN];
	enum manifest_kind kind;
	int ret = -1;

	/* An index of indexes is allowed once; deeper nesting is refused. */
	for (int depth = 0;; depth++) {
		buf_release(&body);
		buf_init(&body, IMAGE_JSON_MAX);
		free(mt);
		mt = NULL;
		if (registry_get_manifest(p->base_reg, p->base.repository, ref, &body, &mt, dg) < 0 ||
		    image_manifest_kind(mt, body.ptr, body.len, p->cfg->image.base, &kind) < 0)
			goto out;
		if (kind == MANIFEST_IMAGE)
			break;
		if (depth == 2) {
			error_set(PS_EXIT_REGISTRY, "base image '%s': indexes nested too deep",
				  p->cfg->image.base);
			goto out;
		}
		free(ref);
		ref = NULL;
		char pick[DIGEST_LEN], *pick_type = NULL;
		if (image_index_pick(body.ptr, body.len, p->cfg->image.platform, p->cfg->image.base,
				     pick, &pick_type) < 0)
			goto out;
		free(pick_type);
		ref = xstrdup(pick);
		log_info("base image '%s': %s is %s", p->cfg->image.base, p->cfg->image.platform, ref);
	}
	if (image_manifest_parse(&p->manifest, body.ptr, body.len, p->cfg->image.base) < 0)
		goto out;
	log_info("base image '%s': manifest %s (%s, %zu layers)", p->cfg->image.base, dg,
		 p->manifest.oci ? "OCI" : "Docker schema 2", p->manifest.nlayers);
	ret = 0;
out:
	buf_release(&body);
	free(mt);
	free(ref);
	return ret;
}

/* "base layer 3/7" for the base's layer i (from 0), in out (PROGRESS_LABEL_MAX). */
static void base_label(const struct pusher *p, size_t i, char *out)
{
	snprintf(out, PROGRESS_LABEL_MAX, "base layer %zu/%zu", i + 1, p->manifest.nlayers);
}

/* What one of our layers is, for the progress: the context's project or its cell. */
static const char *layer_role(const struct pusher *p, const struct layer *l)
{
	return l == &p->ctx->project ? "project" : "cell";
}

/* Sends one file blob (label and role: what it is) unless the registry has it. */
static int push_file(struct pusher *p, const char *label, const char *role, const char *path,
		     const char *digest, uint64_t size)
{
	int r = registry_blob_exists(p->reg, p->repo, digest);
	if (r < 0)
		return -1;
	if (r == 1) {
		progress_skip(&p->prog, label, role, digest, size, "exists");
		return 0;
	}
	progress_begin(&p->prog, label, role, digest, size);
	r = registry_upload_file(p->reg, p->repo, path, digest, size, progress_update, &p->prog);
	progress_end(&p->prog, r == 0);
	if (r < 0)
		return -1;
	p->uploaded_blobs++;
	p->uploaded_bytes += size;
	return 0;
}

/*
 * A base layer the target repository lacks: mounted from the base's
 * repository on the same registry, else fetched into a temporary file
 * and uploaded from it.
 */
static int copy_base_layer(struct pusher *p, const struct descriptor *d, const char *label)
{
	char *path = NULL;
	int r, ret = -1;

	if (p->same_registry) {
		r = registry_mount_blob(p->reg, p->repo, d->digest, p->base.repository);
		if (r < 0)
			return -1;
		if (r == 1) {
			progress_skip(&p->prog, label, "base", d->digest, d->size, "mounted");
			return 0;
		}
	}
	const char *tmp = getenv("TMPDIR");
	char *tmpl = xstrfmt("%s/pystrib-blob-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(tmpl)) {
		error_set(PS_EXIT_IO, "cannot create a temporary directory in '%s': %s",
			  tmp && *tmp ? tmp : "/tmp", strerror(errno));
		free(tmpl);
		return -1;
	}
	path = xstrfmt("%s/blob", tmpl);
	log_info("copying base layer %s from '%s'", d->digest, p->base.registry);
	if (registry_get_blob_file(p->base_reg, p->base.repository, d->digest, d->size, path) < 0)
		goto out;
	ret = push_file(p, label, "base", path, d->digest, d->size);
out:
	unlink(path);
	rmdir(tmpl);
	free(path);
	free(tmpl);
	return ret;
}

static int push_base_layers(struct pusher *p)
{
	for (size_t i = 0; i < p->manifest.nlayers; i++) {
		const struct descriptor *d = &p->manifest.layers[i];
		char label[PROGRESS_LABEL_MAX];
		int r;
		base_label(p, i, label);
		if (check_interrupt() < 0)
			return -1;
		if (d->foreign)
			continue;	/* pulled from where its descriptor says, never pushed */
		r = registry_blob_exists(p->reg, p->repo, d->digest);
		if (r < 0)
			return -1;
		if (r == 1) {
			progress_skip(&p->prog, label, "base", d->digest, d->size, "exists");
			continue;
		}
		if (copy_base_layer(p, d, label) < 0)
			return -1;
	}
	return 0;
}

/*
 * The registry already has this image's manifest, and so every blob it
 * names: they are reported as there without asking for each one.
 */
static void report_all_present(struct pusher *p, const struct buf *config,
			       const char *config_digest)
{
	char label[PROGRESS_LABEL_MAX];

	for (size_t i = 0; i < p->manifest.nlayers; i++) {
		if (p->manifest.layers[i].foreign)
			continue;
		base_label(p, i, label);
		progress_skip(&p->prog, label, "base", p->manifest.layers[i].digest,
			      p->manifest.layers[i].size, "exists");
	}
	for (size_t i = 0; i < p->nlayers; i++)
		progress_skip(&p->prog, layer_role(p, p->layers[i]), layer_role(p, p->layers[i]),
			      p->layers[i]->digest, p->layers[i]->size, "exists");
	progress_skip(&p->prog, "config", "config", config_digest, config->len, "exists");
}

static int push_config(struct pusher *p, const struct buf *config, const char *digest)
{
	int r = registry_blob_exists(p->reg, p->repo, digest);
	if (r < 0)
		return -1;
	if (r == 1) {
		progress_skip(&p->prog, "config", "config", digest, config->len, "exists");
		return 0;
	}
	progress_begin(&p->prog, "config", "config", digest, config->len);
	r = registry_upload_bytes(p->reg, p->repo, config->ptr, config->len, digest);
	progress_end(&p->prog, r == 0);
	if (r < 0)
		return -1;
	p->uploaded_blobs++;
	p->uploaded_bytes += config->len;
	return 0;
}

/* The push's one line, terminal or pipe: what was sent, what the registry had. */
static void say_pushed(const struct pusher *p, double secs)
{
	struct buf sent = BUF_INIT, kept = BUF_INIT;

	progress_bytes(&sent, p->uploaded_bytes);
	progress_bytes(&kept, p->prog.kept_bytes);
	if (!p->uploaded_blobs)
		progress_stage(p->prog.out, "image pushed: the registry had all %u blobs (%s), "
			       "in %.1f s", p->prog.kept_blobs, kept.ptr, secs);
	else
		progress_stage(p->prog.out, "image pushed: %u blob%s sent (%s), the registry "
			       "had %u (%s), in %.1f s", p->uploaded_blobs,
			       p->uploaded_blobs == 1 ? "" : "s", sent.ptr, p->prog.kept_blobs,
			       kept.ptr, secs);
	buf_release(&sent);
	buf_release(&kept);
}

static int check_settings(const struct config *cfg, const char *tag)
{
	if (!cfg->registry.url || !*cfg->registry.url) {
		error_set(PS_EXIT_USAGE, "no registry to push to");
		return error_hint("set [registry] url (and repository) in the config, "
				  "or PYSTRIB_REGISTRY_URL");
	}
	if (!cfg->registry.repository || !ref_repository_valid(cfg->registry.repository)) {
		error_set(PS_EXIT_USAGE, "invalid repository '%s'",
			  cfg->registry.repository ? cfg->registry.repository : "");
		return error_hint("[registry] repository is lower-case path components, "
				  "like team/cells");
	}
	if (!cfg->image.base || !*cfg->image.base) {
		error_set(PS_EXIT_USAGE, "no base image");
		return error_hint("set [image] base to an image with Python 3, Open MPI and "
				  "mpi4py (see dockerfiles/)");
	}
	if (tag && !ref_tag_valid(tag)) {
		error_set(PS_EXIT_USAGE, "invalid tag '%s'", tag);
		return error_hint("a tag is up to 128 letters, digits, '_', '.' and '-', "
				  "not starting with '.' or '-'");
	}
	return 0;
}

static int open_registries(struct pusher *p)
{
	if (image_ref_parse(&p->base, p->cfg->image.base) < 0)
		return error_wrap("[image] base");
	if (registry_open(&p->reg, p->cfg, p->host) < 0)
		return -1;
	p->same_registry = !strcmp(p->base.registry, p->host) ||
			   !strcmp(p->base.registry, registry_host(p->reg));
	if (p->same_registry) {
		p->base_reg = p->reg;
		return 0;
	}
	return registry_open(&p->base_reg, p->cfg, p->base.registry);
}

static void fill_result(struct pusher *p, const char *tag, const char *digest,
			struct pushed_image *out)
{
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	out->registry = xstrdup(p->host);
	out->repository = xstrdup(p->repo);
	out->tag = xstrdup(tag);
	out->digest = xstrdup(digest);
	out->reference = xstrfmt("%s/%s:%s@%s", p->host, p->repo, tag, digest);
	out->pinned = xstrfmt("%s/%s@%s", p->host, p->repo, digest);
	out->layers = xcalloc(p->manifest.nlayers + p->nlayers + 1, sizeof(char *));
	for (size_t i = 0; i < p->manifest.nlayers; i++)
		out->layers[n++] = xstrdup(p->manifest.layers[i].digest);
	for (size_t i = 0; i < p->nlayers; i++)
		out->layers[n++] = xstrdup(p->layers[i]->digest);
	out->uploaded_blobs = p->uploaded_blobs;
	out->uploaded_bytes = p->uploaded_bytes;
}

/*
 * What the registry lacks of the image (config digest cd, manifest md),
 * then the manifest by digest; nothing but one question for an unchanged
 * cell. 0, or -1 with the error set.
 */
static int upload(struct pusher *p, const struct buf *config, const char *cd,
		  const struct buf *manifest, const char *md, const char *manifest_type)
{
	int have = registry_manifest_exists(p->reg, p->repo, md);
	if (have < 0)
		return -1;
	if (have) {
		report_all_present(p, config, cd);
		return 0;
	}
	if (push_base_layers(p) < 0)
		return -1;
	for (size_t i = 0; i < p->nlayers; i++) {
		const char *role = layer_role(p, p->layers[i]);
		if (check_interrupt() < 0 || push_file(p, role, role, p->layers[i]->path,
						       p->layers[i]->digest, p->layers[i]->size) < 0)
			return -1;
	}
	if (check_interrupt() < 0 || push_config(p, config, cd) < 0 || check_interrupt() < 0)
		return -1;
	/* By digest first: the registry checks every blob is there before any tag moves. */
	return registry_put_manifest(p->reg, p->repo, md, manifest_type, manifest->ptr,
				     manifest->len);
}

/* The pushed image, on stderr, in the log and as an event. */
static void announce(struct pusher *p, const struct pushed_image *out, double start)
{
	say_pushed(p, now_monotonic() - start);
	log_info("pushed %s: %u blobs uploaded (%llu bytes), %u requests, %.2f s", out->reference,
		 p->uploaded_blobs, p->uploaded_bytes,
		 registry_requests(p->reg) + (p->same_registry ? 0 : registry_requests(p->base_reg)),
		 now_monotonic() - start);
	event_emit("pushed", "{s:s,s:s,s:s,s:i,s:I,s:i}", "reference", out->reference, "digest",
		   out->digest, "pinned", out->pinned, "uploaded_blobs", (int)p->uploaded_blobs,
		   "uploaded_bytes", (json_int_t)p->uploaded_bytes, "requests",
		   (int)registry_requests(p->reg));
}

int push_image_as(const struct config *cfg, const struct context *ctx,
		  const char *tag, const char *name, struct pushed_image *out)
{
	struct pusher p;
	struct buf config = BUF_INIT, manifest = BUF_INIT;
	char config_digest[DIGEST_LEN], manifest_digest[DIGEST_LEN];
	const char *manifest_type;
	char *deftag = NULL;
	double start = now_monotonic();
	int ret = -1;

	memset(&p, 0, sizeof(p));
	p.cfg = cfg;
	p.ctx = ctx;
	buf_init(&p.base_config, IMAGE_CONFIG_MAX);
	progress_init(&p.prog, stderr);
	if (check_settings(cfg, tag) < 0)
		goto out;
	p.repo = cfg->registry.repository;
	p.host = url_host(cfg->registry.url);
	if (ctx->project.size > 0)
		p.layers[p.nlayers++] = &ctx->project;
	p.layers[p.nlayers++] = &ctx->cell;

	if (open_registries(&p) < 0 || resolve_manifest(&p) < 0 ||
	    registry_get_blob(p.base_reg, p.base.repository, p.manifest.config.digest,
			      &p.base_config) < 0)
		goto out;
	if (image_config_build(&config, p.base_config.ptr, p.base_config.len, p.manifest.nlayers,
			       ctx, p.layers, p.nlayers, cfg->image.platform, cfg->image.base) < 0)
		goto out;
	digest_bytes(config.ptr, config.len, config_digest);
	if (image_manifest_build(&manifest, &p.manifest, config_digest, config.len, p.layers,
				 p.nlayers, &manifest_type) < 0)
		goto out;
	digest_bytes(manifest.ptr, manifest.len, manifest_digest);
	if (!tag)
		tag = deftag = push_default_tag(name, manifest_digest);

	if (upload(&p, &config, config_digest, &manifest, manifest_digest, manifest_type) < 0)
		goto out;
	if (check_interrupt() < 0 ||
	    registry_put_manifest(p.reg, p.repo, tag, manifest_type, manifest.ptr, manifest.len) < 0)
		goto out;

	fill_result(&p, tag, manifest_digest, out);
	announce(&p, out, start);
	ret = 0;
out:
	if (p.base_reg && p.base_reg != p.reg)
		registry_free(p.base_reg);
	if (p.reg)
		registry_free(p.reg);
	image_ref_release(&p.base);
	image_manifest_release(&p.manifest);
	buf_release(&p.base_config);
	buf_release(&config);
	buf_release(&manifest);
	free(p.host);
	free(deftag);
	return ret;
}

void pushed_image_release(struct pushed_image *p)
{
	free(p->registry);
	free(p->repository);
	free(p->tag);
	free(p->digest);
	free(p->reference);
	free(p->pinned);
	if (p->layers)
		for (char **l = p->layers; *l; l++)
			free(*l);
	free(p->layers);
	memset(p, 0, sizeof(*p));
}
