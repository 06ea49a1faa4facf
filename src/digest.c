#include "digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void digest_init(struct digest *d)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		fprintf(stderr, "pystrib: cannot initialise sha256\n");
		abort();
	}
	d->md_ctx = ctx;
}

void digest_update(struct digest *d, const void *data, size_t len)
{
	EVP_DigestUpdate(d->md_ctx, data, len);
}

void digest_final(struct digest *d, char out[DIGEST_LEN])
{
	unsigned char md[32];
	unsigned int n = 0;
	static const char hex[] = "0123456789abcdef";
	EVP_DigestFinal_ex(d->md_ctx, md, &n);
	memcpy(out, "sha256:", 7);
	for (unsigned i = 0; i < 32; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[8 + 2 * i] = hex[md[i] & 15];
	}
	out[71] = '\0';
	digest_release(d);
}

void digest_release(struct digest *d)
{
	EVP_MD_CTX_free(d->md_ctx);
	d->md_ctx = NULL;
}

void digest_bytes(const void *data, size_t len, char out[DIGEST_LEN])
{
	struct digest d;
	digest_init(&d);
	digest_update(&d, data, len);
	digest_final(&d, out);
}

int digest_file(const char *path, char out[DIGEST_LEN])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct digest d;
	char chunk[65536];
	digest_init(&d);
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			digest_release(&d);
			close(fd);
			errno = e;
			return -1;
		}
		if (n == 0)
			break;
		digest_update(&d, chunk, (size_t)n);
	}
	close(fd);
	digest_final(&d, out);
	return 0;
}

int digest_valid(const char *s)
{
	if (strncmp(s, "sha256:", 7))
		return 0;
	for (int i = 0; i < 64; i++) {
		char c = s[7 + i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return s[71] == '\0';
}
