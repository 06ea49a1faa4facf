#ifndef PYSTRIB_EMBEDDED_H
#define PYSTRIB_EMBEDDED_H

#include <stddef.h>

/*
 * Files built into the binary from src/remote/ and dockerfiles/ by
 * cmake/embed.cmake, found by base name ("bootstrap.py", "cell.Dockerfile").
 */
struct embedded {
	const char *name;
	const unsigned char *data;
	size_t len;
};

extern const struct embedded embedded_files[];

/* The file of that base name, or NULL. */
const struct embedded *embedded_find(const char *name);

#endif
