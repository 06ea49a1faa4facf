/*
 * libFuzzer harness for the manifest side of image.c: any bytes as a
 * manifest or index body, with a Content-Type the first byte picks. What
 * parses as an image manifest has well-formed digests and at most
 * IMAGE_MAX_LAYERS layers, and a manifest built on top of it (one layer
 * more) parses back with the same config family and one layer more; an
 * index pick gives a well-formed digest.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "error.h"
#include "image.h"
#include "layer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const types[] = { NULL, "", MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST,
		MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX, "application/json", "text/plain" };
	static const char cfg_digest[] =
		"sha256:0000000000000000000000000000000000000000000000000000000000000001";
	struct layer top = { .path = NULL, .size = 42, .created_by = NULL };
	const struct layer *tops[] = { &top };
	struct image_manifest m = { 0 }, again = { 0 };
	struct buf out = BUF_INIT;
	enum manifest_kind kind;
	const char *body, *built_type = NULL;
	size_t len;

	if (!size)
		return 0;
	body = (const char *)data + 1;
	len = size - 1;
	memcpy(top.digest, "sha256:00000000000000000000000000000000000000000000000000000000000000aa",
	       DIGEST_LEN);
	memcpy(top.diff_id, "sha256:00000000000000000000000000000000000000000000000000000000000000bb",
	       DIGEST_LEN);

	if (image_manifest_kind(types[data[0] % 8], body, len, "fuzz", &kind) == 0 &&
	    kind == MANIFEST_INDEX) {
		char d[DIGEST_LEN], *mt = NULL;
		const char *platform = data[0] & 8 ? "linux/arm64" : "linux/amd64";
		if (image_index_pick(body, len, platform, "fuzz", d, &mt) == 0) {
			if (!digest_valid(d))
				abort();
			free(mt);
		}
	}
	if (image_manifest_parse(&m, body, len, "fuzz") == 0) {
		if (!digest_valid(m.config.digest) || m.nlayers > IMAGE_MAX_LAYERS)
			abort();
		for (size_t i = 0; i < m.nlayers; i++)
			if (!digest_valid(m.layers[i].digest))
				abort();
		if (image_manifest_build(&out, &m, cfg_digest, 10, tops, 1, &built_type) < 0)
			abort();
		if (image_manifest_parse(&again, out.ptr, out.len, "built") < 0 ||
		    again.nlayers != m.nlayers + 1 || again.oci != m.oci ||
		    strcmp(again.config.digest, cfg_digest) ||
		    strcmp(again.layers[m.nlayers].digest, top.digest))
			abort();
	}
	image_manifest_release(&again);
	image_manifest_release(&m);
	buf_release(&out);
	error_clear();
	return 0;
}
