#include <jansson.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "progress.h"
#include "util.h"

#define SHORT_DIGEST 12

void progress_init(struct progress *p, FILE *out)
{
	memset(p, 0, sizeof(*p));
	p->out = out;
	p->tty = isatty(fileno(out));
}

void progress_bytes(struct buf *out, uint64_t n)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	if (n < 1024) {
		buf_addf(out, "%llu B", (unsigned long long)n);
		return;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < ARRAY_SIZE(units)) {
		v /= 1024;
		u++;
	}
	buf_addf(out, "%.1f %s", v, units[u]);
}

static const char *short_digest(const char *digest)
{
	const char *h = strchr(digest, ':');
	return h ? h + 1 : digest;
}

static void add_duration(struct buf *out, double secs)
{
	unsigned long s = (unsigned long)(secs + 0.5);
	if (s >= 3600)
		buf_addf(out, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		buf_addf(out, "%lu:%02lu", s / 60, s % 60);
}

void progress_format(struct buf *out, const char *digest, uint64_t sent, uint64_t total,
		     double elapsed, int width)
{
	double rate = elapsed > 0 ? (double)sent / elapsed : 0;
	struct buf s = BUF_INIT, t = BUF_INIT, r = BUF_INIT, eta = BUF_INIT, tail = BUF_INIT;
	int bar;

	if (sent > total)
		sent = total;
	progress_bytes(&s, sent);
	progress_bytes(&t, total);
	progress_bytes(&r, (uint64_t)rate);
	if (sent == total)
		buf_addstr(&eta, "0:00");
	else if (rate > 0)
		add_duration(&eta, (double)(total - sent) / rate);
	else
		buf_addstr(&eta, "--:--");
	/* Fixed widths, so the bar does not jump as the numbers change. */
	buf_addf(&tail, " %9s / %-9s %9s/s  ETA %s", s.ptr, t.ptr, r.ptr, eta.ptr);

	buf_addf(out, "%.*s ", SHORT_DIGEST, short_digest(digest));
	/* What is left of the line for "[" bar "]" (ETA up to 7 columns), at least 10 of bar. */
	bar = width - SHORT_DIGEST - 1 - 2 - (int)(tail.len - eta.len + 7);
	if (bar > 40)
		bar = 40;
	if (bar >= 10) {
		int full = total ? (int)((double)sent / (double)total * bar) : bar;
		buf_addch(out, '[');
		for (int i = 0; i < bar; i++)
			buf_addch(out, i < full ? '#' : ' ');
		buf_addch(out, ']');
	}
	buf_add(out, tail.ptr, tail.len);
	buf_release(&s);
	buf_release(&t);
	buf_release(&r);
	buf_release(&eta);
	buf_release(&tail);
}

static int term_width(const struct progress *p)
{
	struct winsize ws;
	if (ioctl(fileno(p->out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

static void draw(struct progress *p, double now)
{
	struct buf line = BUF_INIT;

	progress_format(&line, p->digest, p->sent, p->total, now - p->start, term_width(p) - 1);
	fprintf(p->out, "\r%s\033[K", line.ptr);
	fflush(p->out);
	p->drawn = 1;
	p->last_draw = now;
	buf_release(&line);
}

static void blob_event(const char *digest, uint64_t size, const char *state, uint64_t sent)
{
	event_emit("blob", "{s:s,s:I,s:s,s:I}", "digest", digest, "size", (json_int_t)size,
		   "state", state, "sent", (json_int_t)sent);
}

void progress_begin(struct progress *p, const char *digest, uint64_t total)
{
	struct buf size = BUF_INIT;

	snprintf(p->digest, sizeof(p->digest), "%s", digest);
	p->total = total;
	p->sent = 0;
	p->start = p->last_event = now_monotonic();
	p->last_draw = 0;
	p->drawn = 0;
	blob_event(digest, total, "uploading", 0);
	if (p->tty) {
		draw(p, p->start);
	} else if (log_verbosity >= 1) {
		progress_bytes(&size, total);
		fprintf(p->out, "pystrib: uploading %s (%s)\n", digest, size.ptr);
	}
	buf_release(&size);
}

void progress_update(void *data, uint64_t sent, uint64_t total)
{
	struct progress *p = data;
	double now = now_monotonic();

	p->sent = sent;
	if (total)
		p->total = total;
	if (p->tty && now - p->last_draw >= 0.1)
		draw(p, now);
	if (log_json && now - p->last_event >= 1.0) {
		blob_event(p->digest, p->total, "uploading", sent);
		p->last_event = now;
	}
}

void progress_end(struct progress *p, int ok)
{
	double now = now_monotonic(), secs = now - p->start;
	struct buf size = BUF_INIT, rate = BUF_INIT;

	if (!ok) {
		if (p->tty && p->drawn)
			fputc('\n', p->out);
		return;
	}
	p->sent = p->total;
	blob_event(p->digest, p->total, "uploaded", p->total);
	if (p->tty) {
		draw(p, now);
		fputc('\n', p->out);
	} else if (log_verbosity >= 1) {
		progress_bytes(&size, p->total);
		progress_bytes(&rate, secs > 0 ? (uint64_t)((double)p->total / secs) : p->total);
		fprintf(p->out, "pystrib: uploaded %s: %s in %.1f s (%s/s)\n", p->digest, size.ptr,
			secs, rate.ptr);
	}
	fflush(p->out);
	buf_release(&size);
	buf_release(&rate);
}

void progress_skip(const struct progress *p, const char *digest, uint64_t size,
		   const char *state)
{
	blob_event(digest, size, state, 0);
	if (log_verbosity >= 1)
		fprintf(p->out, "pystrib: %s %s\n",
			!strcmp(state, "mounted") ? "mounted" : "the registry has", digest);
}
