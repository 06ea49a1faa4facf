#include "tarball.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "error.h"
#include "util.h"

#define CHUNK 65536
#define GZIP_LEVEL 6

void tar_list_init(struct tar_list *l)
{
	l->v = NULL;
	l->n = 0;
	l->alloc = 0;
}

static void entry_release(struct tar_entry *e)
{
	free(e->path);
	free(e->source);
	free(e->data);
	free(e->link);
}

void tar_list_release(struct tar_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		entry_release(&l->v[i]);
	free(l->v);
	tar_list_init(l);
}

static char *normalise_path(const char *path)
{
	for (;;) {
		if (path[0] == '/')
			path++;
		else if (path[0] == '.' && path[1] == '/')
			path += 2;
		else
			break;
	}
	size_t n = strlen(path);
	while (n && path[n - 1] == '/')
		n--;
	return xstrndup(path, n);
}

static struct tar_entry *add_entry(struct tar_list *l, const char *path, enum tar_kind kind,
				   unsigned mode)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 64;
		l->v = xrealloc(l->v, l->alloc * sizeof(*l->v));
	}
	struct tar_entry *e = &l->v[l->n++];
	memset(e, 0, sizeof(*e));
	e->path = normalise_path(path);
	e->kind = kind;
	e->mode = mode;
	return e;
}

void tar_list_add_dir(struct tar_list *l, const char *path)
{
	add_entry(l, path, TAR_DIR, 0755);
}

void tar_list_add_file(struct tar_list *l, const char *path, const char *source,
		       uint64_t size, int executable)
{
	struct tar_entry *e = add_entry(l, path, TAR_FILE, executable ? 0755 : 0644);
	e->source = xstrdup(source);
	e->size = size;
}

void tar_list_add_data(struct tar_list *l, const char *path, const void *data,
		       size_t len, int executable)
{
	struct tar_entry *e = add_entry(l, path, TAR_FILE, executable ? 0755 : 0644);
	e->data = xmalloc(len ? len : 1);
	if (len)
		memcpy(e->data, data, len);
	e->size = len;
}

void tar_list_add_symlink(struct tar_list *l, const char *path, const char *target)
{
	struct tar_entry *e = add_entry(l, path, TAR_SYMLINK, 0777);
	e->link = xstrdup(target);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct tar_entry *)a)->path, ((const struct tar_entry *)b)->path);
}

static int valid_path(const char *p)
{
	if (!*p)
		return 0;
	for (;;) {
		size_t n = strcspn(p, "/");
		if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return 0;
		if (!p[n])
			return 1;
		p += n + 1;
	}
}

int tar_list_finish(struct tar_list *l)
{
	size_t n = l->n;
	for (size_t i = 0; i < n; i++) {
		if (!valid_path(l->v[i].path))
			return error_set(PS_EXIT_USAGE, "invalid path '%s' in an archive", l->v[i].path);
		/* Parents first-seen get an entry; duplicates go below. */
		for (char *s = strchr(l->v[i].path, '/'); s; s = strchr(s + 1, '/')) {
			char *parent = xstrndup(l->v[i].path, (size_t)(s - l->v[i].path));
			tar_list_add_dir(l, parent);
			free(parent);
		}
	}
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), cmp_entry);
	/* Check before compacting, so that a failure leaves the list intact. */
	for (size_t i = 1; i < l->n; i++) {
		const struct tar_entry *a = &l->v[i - 1], *b = &l->v[i];
		if (strcmp(a->path, b->path) || (a->kind == TAR_DIR && b->kind == TAR_DIR))
			continue;
		return error_set(PS_EXIT_USAGE, "'%s' appears twice in an archive%s", b->path,
				 a->kind == TAR_DIR || b->kind == TAR_DIR
				 ? " (as a directory and as a file)" : "");
	}
	size_t out = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (out && !strcmp(l->v[out - 1].path, l->v[i].path))
			entry_release(&l->v[i]);
		else
			l->v[out++] = l->v[i];
	}
	l->n = out;
	return 0;
}

struct writer {
	int fd;
	int gzip;
	z_stream z;
	int z_ready;
	uLong crc;
	struct digest tar_d, out_d;
	uint64_t tar_size, out_size;
	int failed;		/* the error is set */
	unsigned char out[CHUNK];
};

static int out_write(struct writer *w, const unsigned char *p, size_t n)
{
	digest_update(&w->out_d, p, n);
	w->out_size += n;
	while (n) {
		ssize_t k = write(w->fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			w->failed = 1;
			return error_set(PS_EXIT_IO, "cannot write the archive: %s", strerror(errno));
		}
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int deflate_some(struct writer *w, const void *p, size_t n, int flush)
{
	int r;
	w->z.next_in = (Bytef *)(uintptr_t)p;
	w->z.avail_in = (uInt)n;
	do {
		w->z.next_out = w->out;
		w->z.avail_out = sizeof(w->out);
		r = deflate(&w->z, flush);
		if (r == Z_STREAM_ERROR) {
			w->failed = 1;
			return error_set(PS_EXIT_IO, "cannot compress the archive: zlib error");
		}
		size_t have = sizeof(w->out) - w->z.avail_out;
		if (have && out_write(w, w->out, have) < 0)
			return -1;
	} while (flush == Z_FINISH ? r != Z_STREAM_END : w->z.avail_out == 0);
	return 0;
}

static la_ssize_t write_cb(struct archive *a, void *ud, const void *buf, size_t n)
{
	struct writer *w = ud;
	digest_update(&w->tar_d, buf, n);
	w->tar_size += n;
	int r;
	if (w->gzip) {
		w->crc = crc32(w->crc, buf, (uInt)n);
		r = deflate_some(w, buf, n, Z_NO_FLUSH);
	} else {
		r = out_write(w, buf, n);
	}
	if (r < 0) {
		archive_set_error(a, EIO, "%s", error_message());
		return -1;
	}
	return (la_ssize_t)n;
}

static int gzip_begin(struct writer *w)
{
	/* RFC 1952 header: no name, no comment, mtime 0, XFL 0, OS unknown. */
	static const unsigned char header[10] = { 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff };
	memset(&w->z, 0, sizeof(w->z));
	if (deflateInit2(&w->z, GZIP_LEVEL, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return error_set(PS_EXIT_IO, "cannot start zlib compression");
	w->z_ready = 1;
	w->crc = crc32(0, Z_NULL, 0);
	return out_write(w, header, sizeof(header));
}

static int gzip_end(struct writer *w)
{
	if (deflate_some(w, NULL, 0, Z_FINISH) < 0)
		return -1;
	unsigned char trailer[8];
	uint32_t isize = (uint32_t)w->tar_size;
	for (int i = 0; i < 4; i++) {
		trailer[i] = (unsigned char)(w->crc >> (8 * i));
		trailer[4 + i] = (unsigned char)(isize >> (8 * i));
	}
	return out_write(w, trailer, sizeof(trailer));
}

static int archive_failed(struct writer *w, struct archive *a, const char *path)
{
	if (w->failed)
		return -1;
	return error_set(PS_EXIT_IO, "cannot archive '%s': %s", path, archive_error_string(a));
}

/* Streams e->size bytes of e->source, insisting that the file does not change meanwhile. */
static int stream_file(struct writer *w, struct archive *a, const struct tar_entry *e,
		       unsigned char *chunk)
{
	int ret = -1;
	int fd = open(e->source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return error_set(PS_EXIT_IO, "cannot read '%s': %s", e->source, strerror(errno));
	uint64_t left = e->size;
	while (left) {
		if (interrupt_requested()) {
			error_set(PS_EXIT_INTERRUPTED, "interrupted");
			goto out;
		}
		size_t want = left < CHUNK ? (size_t)left : CHUNK;
		ssize_t n = read(fd, chunk, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_set(PS_EXIT_IO, "cannot read '%s': %s", e->source, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		if (archive_write_data(a, chunk, (size_t)n) < 0) {
			archive_failed(w, a, e->path);
			goto out;
		}
		left -= (uint64_t)n;
	}
	ssize_t extra = read(fd, chunk, 1);
	if (left || extra > 0) {
		error_set(PS_EXIT_IO, "'%s' changed while it was being archived", e->source);
		error_hint("run the command again once the file stops changing");
		goto out;
	}
	ret = 0;
out:
	close(fd);
	return ret;
}

static int write_entry(struct writer *w, struct archive *a, const struct tar_entry *e,
		       unsigned char *chunk)
{
	struct archive_entry *ae = archive_entry_new();
	int ret = -1;
	archive_entry_copy_pathname(ae, e->path);
	archive_entry_set_mtime(ae, 0, 0);
	archive_entry_set_uid(ae, 0);
	archive_entry_set_gid(ae, 0);
	archive_entry_set_perm(ae, e->mode);
	switch (e->kind) {
	case TAR_DIR:
		archive_entry_set_filetype(ae, AE_IFDIR);
		archive_entry_set_size(ae, 0);
		break;
	case TAR_SYMLINK:
		archive_entry_set_filetype(ae, AE_IFLNK);
		archive_entry_copy_symlink(ae, e->link);
		archive_entry_set_size(ae, 0);
		break;
	case TAR_FILE:
		archive_entry_set_filetype(ae, AE_IFREG);
		archive_entry_set_size(ae, (la_int64_t)e->size);
		break;
	}
	if (archive_write_header(a, ae) < ARCHIVE_WARN) {
		archive_failed(w, a, e->path);
		goto out;
	}
	if (e->kind == TAR_FILE && e->source) {
		if (stream_file(w, a, e, chunk) < 0)
			goto out;
	} else if (e->kind == TAR_FILE && e->size) {
		if (archive_write_data(a, e->data, (size_t)e->size) < 0) {
			archive_failed(w, a, e->path);
			goto out;
		}
	}
	if (archive_write_finish_entry(a) < ARCHIVE_WARN) {
		archive_failed(w, a, e->path);
		goto out;
	}
	ret = 0;
out:
	archive_entry_free(ae);
	return ret;
}

int tarball_write(struct tar_list *l, int fd, int gzip, struct tarball_result *res)
{
	int ret = -1;
	struct archive *a = NULL;
	unsigned char *chunk = NULL;
	struct writer *w = xcalloc(1, sizeof(*w));
	w->fd = fd;
	w->gzip = gzip;
	digest_init(&w->tar_d);
	digest_init(&w->out_d);

	if (tar_list_finish(l) < 0)
		goto out;
	if (gzip && gzip_begin(w) < 0)
		goto out;
	a = archive_write_new();
	if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_set_bytes_per_block(a, 10240) != ARCHIVE_OK ||
	    archive_write_open(a, w, NULL, write_cb, NULL) != ARCHIVE_OK) {
		archive_failed(w, a, "(start)");
		goto out;
	}
	chunk = xmalloc(CHUNK);
	for (size_t i = 0; i < l->n; i++)
		if (write_entry(w, a, &l->v[i], chunk) < 0)
			goto out;
	if (archive_write_close(a) != ARCHIVE_OK) {
		archive_failed(w, a, "(end)");
		goto out;
	}
	if (gzip && gzip_end(w) < 0)
		goto out;
	digest_final(&w->tar_d, res->diff_id);
	digest_final(&w->out_d, res->digest);
	res->size = w->out_size;
	res->tar_size = w->tar_size;
	ret = 0;
out:
	if (a)
		archive_write_free(a);
	if (w->z_ready)
		deflateEnd(&w->z);
	if (w->tar_d.md_ctx)
		digest_release(&w->tar_d);
	if (w->out_d.md_ctx)
		digest_release(&w->out_d);
	free(chunk);
	free(w);
	return ret;
}
