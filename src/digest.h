#ifndef PYSTRIB_DIGEST_H
#define PYSTRIB_DIGEST_H

#include <stddef.h>

/* "sha256:" + 64 hex digits + NUL */
#define DIGEST_LEN 72

/* Incremental sha256 over OpenSSL's EVP interface. */
struct digest {
	void *md_ctx;	/* EVP_MD_CTX */
};

void digest_init(struct digest *d);
void digest_update(struct digest *d, const void *data, size_t len);
/* Writes "sha256:<hex>" to out and releases the context. */
void digest_final(struct digest *d, char out[DIGEST_LEN]);
/* Releases a context that will not be finalised (error paths). */
void digest_release(struct digest *d);

void digest_bytes(const void *data, size_t len, char out[DIGEST_LEN]);
/* 0, or -1 with errno set. */
int digest_file(const char *path, char out[DIGEST_LEN]);

/* 1 if s is "sha256:" followed by exactly 64 lowercase hex digits. */
int digest_valid(const char *s);

#endif
