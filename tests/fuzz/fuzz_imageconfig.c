/*
 * libFuzzer harness for image_config_build: any bytes as a base image's
 * config, with the number of base layers it should list picked by the
 * first byte. What it accepts gives a JSON object whose rootfs.diff_ids
 * are the base's plus the new layer's, with pystrib's Cmd.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "error.h"
#include "image.h"
#include "layer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char env0[] = "PYSTRIB_CELL=/pystrib/cell/user_code.py";
	static char *env[] = { env0 };
	struct context ctx;
	struct layer top = { .size = 42 };
	const struct layer *tops[] = { &top };
	struct buf out = BUF_INIT;
	size_t base_layers;

	if (!size)
		return 0;
	memset(&ctx, 0, sizeof(ctx));
	ctx.workdir = (char *)"/pystrib/project";
	ctx.revision = data[0] & 0x80 ? (char *)"0123abcd" : NULL;
	ctx.source = data[0] & 0x40 ? (char *)"https://git.example.com/p.git" : NULL;
	ctx.created = (char *)"2024-05-06T07:08:09Z";
	ctx.env = env;
	ctx.nenv = 1;
	top.created_by = (char *)"pystrib fuzz layer";
	memcpy(top.digest, "sha256:00000000000000000000000000000000000000000000000000000000000000aa",
	       DIGEST_LEN);
	memcpy(top.diff_id, "sha256:00000000000000000000000000000000000000000000000000000000000000bb",
	       DIGEST_LEN);
	base_layers = data[0] & 3;

	if (image_config_build(&out, (const char *)data + 1, size - 1, base_layers, &ctx, tops, 1,
			       NULL, "fuzz") == 0) {
		json_t *j = json_loadb(out.ptr, out.len, 0, NULL);
		json_t *ids = json_object_get(json_object_get(j, "rootfs"), "diff_ids");
		json_t *cmd = json_object_get(json_object_get(j, "config"), "Cmd");
		const char *last = json_string_value(json_array_get(ids, base_layers));
		const char *cmd0 = json_string_value(json_array_get(cmd, 0));
		if (!json_is_object(j) || json_array_size(ids) != base_layers + 1 || !last ||
		    strcmp(last, top.diff_id) || !cmd0 || strcmp(cmd0, context_cmd[0]))
			abort();
		json_decref(j);
	}
	buf_release(&out);
	error_clear();
	return 0;
}
