#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"
#include "progress.h"
#include "util.h"

/* The bar's label column: "base layer 12/40" fits. */
#define LABEL_COLS 16

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

static void add_duration(struct buf *out, double secs)
{
	unsigned long s = (unsigned long)(secs + 0.5);
	if (s >= 3600)
		buf_addf(out, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		buf_addf(out, "%lu:%02lu", s / 60, s % 60);
}

void progress_format(struct buf *out, const char *label, uint64_t sent, uint64_t total,
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

	buf_addf(out, "%-*.*s ", LABEL_COLS, LABEL_COLS, label);
	/* What is left of the line for "[" bar "]" (ETA up to 7 columns), at least 10 of bar. */
	bar = width - LABEL_COLS - 1 - 2 - (int)(tail.len - eta.len + 7);
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

static int term_width(FILE *out)
{
	struct winsize ws;
	if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

/* Redraws the bar line in place; *drawn and *last_draw say it was. */
static void draw_bar(FILE *out, const char *label, uint64_t sent, uint64_t total,
		     double elapsed, int *drawn)
{
	struct buf line = BUF_INIT;

	progress_format(&line, label, sent, total, elapsed, term_width(out) - 1);
	fprintf(out, "\r%s\033[K", line.ptr);
	fflush(out);
	*drawn = 1;
	buf_release(&line);
}

static void draw(struct progress *p, double now)
{
	draw_bar(p->out, p->label, p->sent, p->total, now - p->start, &p->drawn);
	p->last_draw = now;
}

/*
 * A line of its own for a blob of size on a pipe: every blob with -v;
 * without, only the large ones, and none with --json (the events say it).
 */
static int pipe_line(const struct progress *p, uint64_t size)
{
	if (p->tty)
		return 0;
	return log_verbosity >= 1 || (!log_json && size >= PROGRESS_LARGE);
}

static void blob_event(const struct progress *p, const char *digest, uint64_t size,
		       const char *state, uint64_t sent)
{
	event_emit("blob", "{s:s,s:I,s:s,s:I,s:s?}", "digest", digest, "size", (json_int_t)size,
		   "state", state, "sent", (json_int_t)sent, "role", *p->role ? p->role : NULL);
}

static void set_names(struct progress *p, const char *label, const char *role)
{
	snprintf(p->label, sizeof(p->label), "%s", label ? label : "blob");
	snprintf(p->role, sizeof(p->role), "%s", role ? role : "");
}

void progress_begin(struct progress *p, const char *label, const char *role,
		    const char *digest, uint64_t total)
{
	struct buf size = BUF_INIT;

	set_names(p, label, role);
	snprintf(p->digest, sizeof(p->digest), "%s", digest);
	p->total = total;
	p->sent = 0;
	p->start = p->last_event = now_monotonic();
	p->last_draw = 0;
	p->drawn = 0;
	blob_event(p, digest, total, "uploading", 0);
	if (p->tty) {
		draw(p, p->start);
	} else if (log_verbosity >= 1) {
		progress_bytes(&size, total);
		fprintf(p->out, "pystrib: uploading %s %s (%s)\n", p->label, digest, size.ptr);
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
		blob_event(p, p->digest, p->total, "uploading", sent);
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
	blob_event(p, p->digest, p->total, "uploaded", p->total);
	if (p->tty) {
		draw(p, now);
		fputc('\n', p->out);
	} else if (pipe_line(p, p->total)) {
		progress_bytes(&size, p->total);
		progress_bytes(&rate, secs > 0 ? (uint64_t)((double)p->total / secs) : p->total);
		fprintf(p->out, "pystrib: uploaded %s%s%s: %s in %.1f s (%s/s)\n", p->label,
			log_verbosity >= 1 ? " " : "", log_verbosity >= 1 ? p->digest : "", size.ptr,
			secs, rate.ptr);
	}
	fflush(p->out);
	buf_release(&size);
	buf_release(&rate);
}

void progress_skip(struct progress *p, const char *label, const char *role,
		   const char *digest, uint64_t size, const char *state)
{
	set_names(p, label, role);
	p->kept_blobs++;
	p->kept_bytes += size;
	blob_event(p, digest, size, state, 0);
	if (log_verbosity >= 1)
		fprintf(p->out, "pystrib: %s %s %s\n",
			!strcmp(state, "mounted") ? "mounted" : "the registry has", p->label, digest);
}

void progress_stage(FILE *out, const char *fmt, ...)
{
	va_list ap;

	if (log_json)
		return;
	va_start(ap, fmt);
	fputs("pystrib: ", out);
	vfprintf(out, fmt, ap);
	fputc('\n', out);
	fflush(out);
	va_end(ap);
}

/* ---- an engine's pull ---------------------------------------------- */

#define PULL_LAYERS_MAX 256

const char *pull_state_name(enum pull_state s)
{
	static const char *const names[] = {
		[PULL_WAITING] = "waiting", [PULL_DOWNLOADING] = "downloading",
		[PULL_DOWNLOADED] = "downloaded", [PULL_EXTRACTING] = "extracting",
		[PULL_DONE] = "done", [PULL_EXISTS] = "exists",
	};
	return (size_t)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

void pull_progress_init(struct pull_progress *pp, FILE *out)
{
	memset(pp, 0, sizeof(*pp));
	pp->out = out;
	pp->tty = isatty(fileno(out));
	pp->start = now_monotonic();
}

void pull_progress_release(struct pull_progress *pp)
{
	free(pp->layers);
	pp->layers = NULL;
	pp->nlayers = pp->alloc = 0;
}

static struct pull_layer *find_layer(struct pull_progress *pp, const char *id, double now)
{
	for (size_t i = 0; i < pp->nlayers; i++)
		if (!strcmp(pp->layers[i].id, id))
			return &pp->layers[i];
	if (pp->nlayers == PULL_LAYERS_MAX || strlen(id) >= sizeof(pp->layers->id))
		return NULL;
	if (pp->nlayers == pp->alloc) {
		pp->alloc = pp->alloc ? 2 * pp->alloc : 8;
		pp->layers = xrealloc(pp->layers, pp->alloc * sizeof(*pp->layers));
	}
	struct pull_layer *l = &pp->layers[pp->nlayers++];
	memset(l, 0, sizeof(*l));
	snprintf(l->id, sizeof(l->id), "%s", id);
	l->start = now;
	return l;
}

/* Counts of the layers: pulled or there already (done), and their bytes. */
static void pull_totals(const struct pull_progress *pp, size_t *done, size_t *existed,
			uint64_t *current, uint64_t *total)
{
	*done = *existed = 0;
	*current = *total = 0;
	for (size_t i = 0; i < pp->nlayers; i++) {
		const struct pull_layer *l = &pp->layers[i];
		if (l->state == PULL_EXISTS) {
			(*existed)++;
			continue;
		}
		if (l->state == PULL_DONE)
			(*done)++;
		*current += l->current;
		*total += l->total;
	}
}

static void pull_draw(struct pull_progress *pp, double now)
{
	size_t done, existed;
	uint64_t current, total;
	char label[PROGRESS_LABEL_MAX];

	pull_totals(pp, &done, &existed, &current, &total);
	snprintf(label, sizeof(label), "pull %zu/%zu layers", done + existed, pp->nlayers);
	draw_bar(pp->out, label, current, total, now - pp->start, &pp->drawn);
	pp->last_draw = now;
}

static void pull_event(const struct pull_layer *l, uint64_t current, uint64_t total)
{
	event_emit("pull", "{s:s,s:s,s:I,s:I}", "layer", l->id, "state",
		   pull_state_name(l->state), "current", (json_int_t)current, "total",
		   (json_int_t)total);
}

/* On a pipe: a line when a layer is pulled (and with -v, when the host had it). */
static void pull_line(const struct pull_progress *pp, const struct pull_layer *l, double now)
{
	struct buf size = BUF_INIT;

	if (pp->tty || (log_json && log_verbosity < 1))
		return;
	if (l->state == PULL_DONE) {
		progress_bytes(&size, l->total);
		fprintf(pp->out, "pystrib: pulled layer %s (%s) in %.1f s\n", l->id, size.ptr,
			now - l->start);
	} else if (l->state == PULL_EXISTS && log_verbosity >= 1) {
		fprintf(pp->out, "pystrib: the host has layer %s\n", l->id);
	}
	fflush(pp->out);
	buf_release(&size);
}

void pull_progress_layer(struct pull_progress *pp, const char *id, enum pull_state state,
			 uint64_t current, uint64_t total)
{
	double now = now_monotonic();
	size_t known = pp->nlayers;
	struct pull_layer *l = find_layer(pp, id, now);

	if (!l)
		return;
	int changed = l->state != state || pp->nlayers > known;
	if (total > 0)
		l->total = total;
	/* Past the download, the layer counts as all there: extraction is not bytes moved. */
	if (state == PULL_DOWNLOADING)
		l->current = current < l->total ? current : l->total;
	else if (state >= PULL_DOWNLOADED)
		l->current = l->total;
	if (state == PULL_DOWNLOADING && l->state == PULL_WAITING)
		l->start = now;
	l->state = state;
	if (changed || now - pp->last_event >= 1.0) {
		pull_event(l, state == PULL_EXTRACTING ? current : l->current, l->total);
		pp->last_event = now;
	}
	if (changed)
		pull_line(pp, l, now);
	if (pp->tty && (changed || now - pp->last_draw >= 0.1))
		pull_draw(pp, now);
}

void pull_progress_end(struct pull_progress *pp, int ok)
{
	double now = now_monotonic();
	size_t done, existed;
	uint64_t current, total;
	struct buf size = BUF_INIT, more = BUF_INIT;

	if (pp->tty && pp->drawn) {
		if (ok)
			pull_draw(pp, now);
		fputc('\n', pp->out);
	}
	if (!ok)
		return;
	pull_totals(pp, &done, &existed, &current, &total);
	if (!done) {
		progress_stage(pp->out, "image pulled by the host: it had every layer already");
		return;
	}
	progress_bytes(&size, total);
	if (existed)
		buf_addf(&more, ", %zu it had already", existed);
	progress_stage(pp->out, "image pulled by the host: %zu layer%s (%s) in %.1f s%s", done,
		       done == 1 ? "" : "s", size.ptr, now - pp->start, more.ptr);
	buf_release(&size);
	buf_release(&more);
}
