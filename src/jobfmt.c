#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jobfmt.h"
#include "jobrec.h"

const char *jobrec_fmt_time(char *out, size_t n, double t)
{
	time_t secs = (time_t)t;
	struct tm tm;

	if (t <= 0 || !localtime_r(&secs, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, n, "-");
	return out;
}

const char *jobrec_fmt_duration(char *out, size_t n, double secs)
{
	long s = (long)(secs + 0.5);

	if (secs < 0)
		snprintf(out, n, "-");
	else if (secs < 60)
		snprintf(out, n, "%.1fs", secs);
	else if (s < 3600)
		snprintf(out, n, "%ldm%02lds", s / 60, s % 60);
	else
		snprintf(out, n, "%ldh%02ldm", s / 3600, (s % 3600) / 60);
	return out;
}

const char *jobrec_image_tag(char *out, size_t n, const char *image)
{
	const char *at, *slash, *colon;
	size_t len;

	if (!image || !*image) {
		snprintf(out, n, "-");
		return out;
	}
	at = strchr(image, '@');
	len = at ? (size_t)(at - image) : strlen(image);
	slash = memrchr(image, '/', len);
	colon = memrchr(slash ? slash : image, ':', len - (size_t)(slash ? slash - image : 0));
	if (colon)
		snprintf(out, n, "%.*s", (int)(len - (size_t)(colon + 1 - image)), colon + 1);
	else if (at && !strncmp(at + 1, "sha256:", 7))
		snprintf(out, n, "%.12s", at + 8);
	else
		snprintf(out, n, "-");
	return out;
}

const char *jobrec_remote_label(const struct jobrec *r)
{
	return r->remote ? r->remote : r->host ? r->host : "default";
}
