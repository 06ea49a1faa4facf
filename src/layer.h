#ifndef PYSTRIB_LAYER_H
#define PYSTRIB_LAYER_H

#include <stdint.h>

/*
 * One image layer as a gzip-compressed tar blob on disk, the unit that
 * context.c produces and image.c / registry.c push. Digests are
 * "sha256:<64 hex>".
 */
struct layer {
	char *path;		/* the compressed blob (caller-owned file) */
	char digest[72];	/* sha256 of the compressed bytes: the blob digest */
	char diff_id[72];	/* sha256 of the uncompressed tar: rootfs.diff_ids */
	uint64_t size;		/* compressed size in bytes */
	char *created_by;	/* for the config's history entry */
};

void layer_release(struct layer *l);

#endif
