#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "image.h"
#include "log.h"

static int bad(const char *what, const char *fmt, const char *detail)
{
	error_set(PS_EXIT_REGISTRY, "base image '%s': %s%s", what, fmt, detail ? detail : "");
	return -1;
}

static json_t *load(const char *body, size_t len, size_t max, const char *what, const char *kind)
{
	json_error_t err;
	json_t *root;

	if (len > max) {
		error_set(PS_EXIT_REGISTRY, "base image '%s': %s too large (%zu bytes)", what, kind,
			  len);
		return NULL;
	}
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		error_set(PS_EXIT_REGISTRY, "base image '%s': %s is not JSON: %s", what, kind,
			  err.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		error_set(PS_EXIT_REGISTRY, "base image '%s': %s is not a JSON object", what, kind);
		return NULL;
	}
	return root;
}

/* A string member, or NULL when absent or not a string. */
static const char *str_member(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static int is_index_type(const char *t)
{
	return !strcmp(t, MEDIA_DOCKER_LIST) || !strcmp(t, MEDIA_OCI_INDEX);
}

static int is_manifest_type(const char *t)
{
	return !strcmp(t, MEDIA_DOCKER_MANIFEST) || !strcmp(t, MEDIA_OCI_MANIFEST);
}

int image_manifest_kind(const char *media_type, const char *body, size_t len,
			const char *what, enum manifest_kind *out)
{
	json_t *root = NULL;
	const char *t = media_type;
	int ret = -1;
	char *type = NULL;

	/* A registry may answer with a parameter (";charset=...") or a generic type. */
	if (t && *t) {
		type = xstrndup(t, strcspn(t, "; \t"));
		t = type;
	}
	if (!t || !*t || !strcmp(t, "application/json") || !strcmp(t, "text/plain") ||
	    !strcmp(t, "application/octet-stream")) {
		if (!(root = load(body, len, IMAGE_JSON_MAX, what, "manifest")))
			goto out;
		t = str_member(root, "mediaType");
		if (!t) {
			/* OCI lets both leave mediaType out: the shape tells. */
			if (json_is_array(json_object_get(root, "manifests")))
				t = MEDIA_OCI_INDEX;
			else if (json_is_array(json_object_get(root, "layers")))
				t = MEDIA_OCI_MANIFEST;
			else if (json_is_array(json_object_get(root, "fsLayers")))
				t = "application/vnd.docker.distribution.manifest.v1+json";
			else
				t = "";
		}
	}
	if (is_index_type(t)) {
		*out = MANIFEST_INDEX;
		ret = 0;
	} else if (is_manifest_type(t)) {
		*out = MANIFEST_IMAGE;
		ret = 0;
	} else if (!strncmp(t, "application/vnd.docker.distribution.manifest.v1", 47)) {
		bad(what, "Docker schema 1 manifests are not supported", NULL);
		error_hint("push the base again with a current docker, podman or skopeo");
	} else {
		error_set(PS_EXIT_REGISTRY, "base image '%s': unknown manifest type '%s'", what, t);
	}
out:
	json_decref(root);
	free(type);
	return ret;
}

/* ---- platforms ----------------------------------------------------------- */

struct platform {
	char os[32], arch[32], variant[32];
};

static void norm_arch(char *arch)
{
	if (!strcmp(arch, "x86_64") || !strcmp(arch, "x86-64"))
		memcpy(arch, "amd64", 6);
	else if (!strcmp(arch, "aarch64"))
		memcpy(arch, "arm64", 6);
}

static int copy_field(char *dst, size_t n, const char *s, size_t len)
{
	if (len >= n)
		return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

/* "os/arch[/variant]"; 0 or -1. */
static int platform_parse(struct platform *p, const char *s)
{
	const char *a = strchr(s, '/'), *v;

	memset(p, 0, sizeof(*p));
	if (!a || a == s)
		return -1;
	v = strchr(a + 1, '/');
	if (copy_field(p->os, sizeof(p->os), s, (size_t)(a - s)) < 0 ||
	    copy_field(p->arch, sizeof(p->arch), a + 1, v ? (size_t)(v - a - 1) : strlen(a + 1)) < 0 ||
	    !p->arch[0] || (v && (copy_field(p->variant, sizeof(p->variant), v + 1, strlen(v + 1)) < 0 ||
				  !p->variant[0] || strchr(p->variant, '/'))))
		return -1;
	norm_arch(p->arch);
	return 0;
}

/* The platform of an index entry; 0, or -1 when it has none usable. */
static int entry_platform(const json_t *e, struct platform *p)
{
	const json_t *pl = json_object_get(e, "platform");
	const char *os = str_member(pl, "os"), *arch = str_member(pl, "architecture");
	const char *var = str_member(pl, "variant");

	memset(p, 0, sizeof(*p));
	if (!os || !arch || copy_field(p->os, sizeof(p->os), os, strlen(os)) < 0 ||
	    copy_field(p->arch, sizeof(p->arch), arch, strlen(arch)) < 0 ||
	    (var && copy_field(p->variant, sizeof(p->variant), var, strlen(var)) < 0))
		return -1;
	norm_arch(p->arch);
	return 0;
}

static const char *default_variant(const char *arch)
{
	if (!strcmp(arch, "arm64"))
		return "v8";
	if (!strcmp(arch, "arm"))
		return "v7";
	return "";
}

/*
 * How well entry e fits the wanted platform w: 0 not at all, 1 os and arch
 * match with another variant allowed, 2 the exact or usual variant.
 */
static int platform_score(const struct platform *w, const struct platform *e)
{
	const char *dv = default_variant(e->arch);

	if (strcmp(w->os, e->os) || strcmp(w->arch, e->arch))
		return 0;
	if (w->variant[0]) {
		if (!strcmp(w->variant, e->variant))
			return 2;
		/* "arm64/v8" and "arm64" name the same thing. */
		if (!strcmp(w->variant, dv) && !e->variant[0])
			return 2;
		return 0;
	}
	return !e->variant[0] || !strcmp(e->variant, dv) ? 2 : 1;
}

static void add_platform_name(struct buf *b, const struct platform *p)
{
	buf_addf(b, "%s%s/%s%s%s", b->len ? ", " : "", p->os, p->arch, p->variant[0] ? "/" : "",
		 p->variant);
}

static int descriptor_parse(struct descriptor *d, const json_t *o, const char *what,
			    const char *where, int need_type)
{
	const char *t = str_member(o, "mediaType"), *dg = str_member(o, "digest");
	const json_t *size = json_object_get(o, "size");

	memset(d, 0, sizeof(*d));
	if (!json_is_object(o))
		return bad(what, where, " is not an object");
	if (!dg || !digest_valid(dg))
		return bad(what, where, " has no valid sha256 digest");
	if (!json_is_integer(size) || json_integer_value(size) < 0)
		return bad(what, where, " has no valid size");
	if (need_type && (!t || !*t))
		return bad(what, where, " has no mediaType");
	if (t && strlen(t) > 255)
		return bad(what, where, " has an overlong mediaType");
	memcpy(d->digest, dg, DIGEST_LEN);
	d->size = (uint64_t)json_integer_value(size);
	d->media_type = t ? xstrdup(t) : NULL;
	d->foreign = t && (strstr(t, "foreign") || strstr(t, "nondistributable"));
	return 0;
}

int image_index_pick(const char *body, size_t len, const char *platform, const char *what,
		     char digest[DIGEST_LEN], char **media_type)
{
	json_t *root = NULL;
	const json_t *list, *e, *best = NULL;
	struct platform want, have;
	struct buf avail = BUF_INIT;
	int best_score = 0, ret = -1;
	size_t i;

	if (platform_parse(&want, platform) < 0) {
		error_set(PS_EXIT_USAGE, "invalid platform '%s'", platform);
		error_hint("set [image] platform to os/arch[/variant], like linux/amd64");
		return -1;
	}
	if (!(root = load(body, len, IMAGE_JSON_MAX, what, "index")))
		goto out;
	list = json_object_get(root, "manifests");
	if (!json_is_array(list)) {
		bad(what, "index has no 'manifests' list", NULL);
		goto out;
	}
	if (json_array_size(list) > IMAGE_MAX_MANIFESTS) {
		bad(what, "index has too many entries", NULL);
		goto out;
	}
	json_array_foreach(list, i, e) {
		int s;
		if (!json_is_object(e) || entry_platform(e, &have) < 0)
			continue;
		if (!strcmp(have.os, "unknown"))
			continue;	/* build attestations */
		add_platform_name(&avail, &have);
		s = platform_score(&want, &have);
		if (s > best_score) {
			best_score = s;
			best = e;
		}
	}
	if (!best) {
		error_set(PS_EXIT_REGISTRY, "base image '%s' has no image for platform '%s'%s%s",
			  what, platform, avail.len ? "; it has " : " (its index lists no platforms)",
			  avail.ptr);
		error_hint("set [image] platform to one of these, or pick another base image");
		goto out;
	} else {
		struct descriptor d;
		if (descriptor_parse(&d, best, what, "the index entry", 0) < 0)
			goto out;
		if (d.media_type && !is_manifest_type(d.media_type) && !is_index_type(d.media_type)) {
			bad(what, "the index entry for the platform has media type ", d.media_type);
			free(d.media_type);
			goto out;
		}
		memcpy(digest, d.digest, DIGEST_LEN);
		*media_type = d.media_type ? d.media_type : xstrdup(MEDIA_OCI_MANIFEST);
		ret = 0;
	}
out:
	buf_release(&avail);
	json_decref(root);
	return ret;
}

/* ---- manifests ----------------------------------------------------------- */

void image_manifest_release(struct image_manifest *m)
{
	free(m->config.media_type);
	for (size_t i = 0; i < m->nlayers; i++)
		free(m->layers[i].media_type);
	free(m->layers);
	json_decref(m->layers_json);
	memset(m, 0, sizeof(*m));
}

int image_manifest_parse(struct image_manifest *m, const char *body, size_t len,
			 const char *what)
{
	json_t *root, *layers, *e;
	const json_t *sv;
	const char *t;
	size_t i;
	int ret = -1;

	memset(m, 0, sizeof(*m));
	if (!(root = load(body, len, IMAGE_JSON_MAX, what, "manifest")))
		return -1;
	sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		bad(what, "manifest is not schemaVersion 2", NULL);
		goto out;
	}
	t = str_member(root, "mediaType");
	if (t && !is_manifest_type(t)) {
		bad(what, "not an image manifest: ", t);
		goto out;
	}
	if (descriptor_parse(&m->config, json_object_get(root, "config"), what,
			     "the manifest's config", 0) < 0)
		goto out;
	/* The family: the manifest's own type, else its config's. */
	m->oci = t ? !strcmp(t, MEDIA_OCI_MANIFEST)
		   : !(m->config.media_type && !strcmp(m->config.media_type, MEDIA_DOCKER_CONFIG));
	layers = json_object_get(root, "layers");
	if (!json_is_array(layers)) {
		bad(what, "manifest has no 'layers' list", NULL);
		goto out;
	}
	if (json_array_size(layers) > IMAGE_MAX_LAYERS) {
		bad(what, "manifest has too many layers", NULL);
		goto out;
	}
	m->layers = xcalloc(json_array_size(layers) + 1, sizeof(*m->layers));
	json_array_foreach(layers, i, e) {
		if (descriptor_parse(&m->layers[i], e, what, "a layer of the manifest", 1) < 0)
			goto out;
		m->nlayers++;
	}
	m->layers_json = json_incref(layers);
	ret = 0;
out:
	json_decref(root);
	return ret;
}

/* ---- writing ------------------------------------------------------------- */

static int dump(struct buf *out, json_t *root)
{
	char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (!s)
		return error_set(PS_EXIT_REGISTRY, "internal error: cannot write JSON");
	buf_reset(out);
	int r = buf_addstr(out, s);
	free(s);
	if (r < 0)
		return error_set(PS_EXIT_REGISTRY, "the image JSON is too large");
	return 0;
}

/* The object member key of o, created (or replaced when not an object). */
static json_t *object_member(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_object(v)) {
		v = json_object();
		json_object_set_new(o, key, v);
	}
	return v;
}

static json_t *array_member(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_array(v)) {
		v = json_array();
		json_object_set_new(o, key, v);
	}
	return v;
}

/* Env: the base's variables, those named in ctx->env replaced, then ctx->env. */
static void set_env(json_t *cfg, const struct context *ctx)
{
	json_t *old = json_object_get(cfg, "Env"), *env = json_array(), *e;
	size_t i, j;

	if (json_is_array(old)) {
		json_array_foreach(old, i, e) {
			const char *s = json_string_value(e);
			int replaced = 0;
			if (!s)
				continue;
			size_t n = strcspn(s, "=");
			for (j = 0; j < ctx->nenv && !replaced; j++)
				replaced = !strncmp(ctx->env[j], s, n) && ctx->env[j][n] == '=';
			if (!replaced)
				json_array_append(env, e);
		}
	}
	for (j = 0; j < ctx->nenv; j++)
		json_array_append_new(env, json_string(ctx->env[j]));
	json_object_set_new(cfg, "Env", env);
}

static void set_labels(json_t *cfg, const struct context *ctx)
{
	json_t *labels;

	if (!ctx->revision && !ctx->source)
		return;
	labels = object_member(cfg, "Labels");

	if (ctx->revision) {
		json_object_set_new(labels, "org.opencontainers.image.revision",
				    json_string(ctx->revision));
		json_object_set_new(labels, "org.opencontainers.image.created",
				    json_string(ctx->created));
	}
	if (ctx->source)
		json_object_set_new(labels, "org.opencontainers.image.source",
				    json_string(ctx->source));
}

static void check_platform(const json_t *root, const char *platform, const char *what)
{
	struct platform want, have;
	const char *os = str_member(root, "os"), *arch = str_member(root, "architecture");
	const char *var = str_member(root, "variant");

	if (!platform || platform_parse(&want, platform) < 0 || !os || !arch)
		return;
	memset(&have, 0, sizeof(have));
	if (copy_field(have.os, sizeof(have.os), os, strlen(os)) < 0 ||
	    copy_field(have.arch, sizeof(have.arch), arch, strlen(arch)) < 0 ||
	    (var && copy_field(have.variant, sizeof(have.variant), var, strlen(var)) < 0))
		return;
	norm_arch(have.arch);
	if (!platform_score(&want, &have))
		log_warn("base image '%s' is for %s/%s, not for the configured platform '%s'", what,
			 os, arch, platform);
}

static int check_diff_ids(const json_t *ids, size_t base_layers, const char *what)
{
	const json_t *e;
	size_t i;

	if (!json_is_array(ids))
		return bad(what, "config has no rootfs.diff_ids list", NULL);
	if (json_array_size(ids) != base_layers) {
		error_set(PS_EXIT_REGISTRY,
			  "base image '%s': its config lists %zu diff_ids for %zu layers", what,
			  json_array_size(ids), base_layers);
		return -1;
	}
	json_array_foreach(ids, i, e) {
		if (!json_is_string(e) || !digest_valid(json_string_value(e)))
			return bad(what, "config has an invalid diff_id", NULL);
	}
	return 0;
}

int image_config_build(struct buf *out, const char *base, size_t len, size_t base_layers,
		       const struct context *ctx, const struct layer *const *layers,
		       size_t nlayers, const char *platform, const char *what)
{
	json_t *root, *rootfs, *ids, *cfg, *hist, *cmd;
	size_t i;
	int ret = -1;

	if (!(root = load(base, len, IMAGE_CONFIG_MAX, what, "config")))
		return -1;
	rootfs = json_object_get(root, "rootfs");
	if (!json_is_object(rootfs)) {
		bad(what, "config has no rootfs", NULL);
		goto out;
	}
	ids = json_object_get(rootfs, "diff_ids");
	if (check_diff_ids(ids, base_layers, what) < 0)
		goto out;
	if (json_object_get(root, "history") && !json_is_array(json_object_get(root, "history"))) {
		bad(what, "config has a history that is not a list", NULL);
		goto out;
	}
	check_platform(root, platform, what);

	/* What the base's last build step left behind describes the base, not us. */
	json_object_del(root, "container");
	json_object_del(root, "container_config");
	json_object_set_new(root, "created", json_string(ctx->created));
	cfg = object_member(root, "config");
	set_env(cfg, ctx);
	cmd = json_array();
	for (i = 0; context_cmd[i]; i++)
		json_array_append_new(cmd, json_string(context_cmd[i]));
	json_object_set_new(cfg, "Cmd", cmd);
	json_object_set_new(cfg, "WorkingDir", json_string(ctx->workdir));
	set_labels(cfg, ctx);

	hist = array_member(root, "history");
	for (i = 0; i < nlayers; i++) {
		json_array_append_new(ids, json_string(layers[i]->diff_id));
		json_array_append_new(hist, json_pack("{s:s,s:s,s:s}", "created", ctx->created,
						      "created_by",
						      layers[i]->created_by ? layers[i]->created_by
									    : "pystrib",
						      "comment", "pystrib"));
	}
	json_array_append_new(hist, json_pack("{s:s,s:s,s:s,s:b}", "created", ctx->created,
					      "created_by", "pystrib: WorkingDir, Env, Cmd, Labels",
					      "comment", "pystrib", "empty_layer", 1));
	ret = dump(out, root);
out:
	json_decref(root);
	return ret;
}

int image_manifest_build(struct buf *out, const struct image_manifest *base,
			 const char *config_digest, uint64_t config_size,
			 const struct layer *const *layers, size_t nlayers,
			 const char **media_type)
{
	const char *mt = base->oci ? MEDIA_OCI_MANIFEST : MEDIA_DOCKER_MANIFEST;
	const char *ct = base->oci ? MEDIA_OCI_CONFIG : MEDIA_DOCKER_CONFIG;
	const char *lt = base->oci ? MEDIA_OCI_LAYER : MEDIA_DOCKER_LAYER;
	json_t *root, *list;
	int ret;

	list = base->layers_json ? json_deep_copy(base->layers_json) : json_array();
	for (size_t i = 0; i < nlayers; i++)
		json_array_append_new(list, json_pack("{s:s,s:s,s:I}", "mediaType", lt, "digest",
						      layers[i]->digest, "size",
						      (json_int_t)layers[i]->size));
	root = json_pack("{s:i,s:s,s:{s:s,s:s,s:I},s:o}", "schemaVersion", 2, "mediaType", mt,
			 "config", "mediaType", ct, "digest", config_digest, "size",
			 (json_int_t)config_size, "layers", list);
	if (!root)
		return error_set(PS_EXIT_REGISTRY, "internal error: cannot build the manifest");
	ret = dump(out, root);
	json_decref(root);
	if (ret == 0)
		*media_type = mt;
	return ret;
}
