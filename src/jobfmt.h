#ifndef PYSTRIB_JOBFMT_H
#define PYSTRIB_JOBFMT_H

#include <stddef.h>

struct jobrec;

/*
 * A job record's fields for display (jobs, status, gc). Each writes into
 * out[n] and returns out.
 */

/* Local time "YYYY-MM-DD HH:MM:SS"; "-" for 0. */
const char *jobrec_fmt_time(char *out, size_t n, double t);

/* A duration "4.2s" "3m05s" "2h03m"; "-" for < 0. */
const char *jobrec_fmt_duration(char *out, size_t n, double secs);

/*
 * The tag of an image reference: "REG/REPO:TAG@sha256:..." gives "TAG";
 * without a tag the first 12 hex digits of the digest; "-" for NULL.
 */
const char *jobrec_image_tag(char *out, size_t n, const char *image);

/* The display name of the job's remote: NAME, the --host given, or "default". */
const char *jobrec_remote_label(const struct jobrec *r);

#endif
