/* Lock-free counters and histograms, and the Prometheus text exposition format 0.0.4 they are
 * scraped in. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shared/metrics.h"

uint64_t metrics_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

void metrics_histogram_observe(struct metrics_histogram *h, const struct metrics_buckets *b, uint64_t ns)
{
	size_t i = 0;

	assert(b->n <= METRICS_BUCKETS_MAX);
	/* "le": a duration equal to a bound belongs to that bound's bucket. */
	while (i < b->n && ns > b->le_ns[i])
		i++;
	atomic_fetch_add_explicit(&h->slots[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

uint64_t metrics_histogram_count(const struct metrics_histogram *h, const struct metrics_buckets *b)
{
	uint64_t n = 0;

	for (size_t i = 0; i <= b->n; i++)
		n += atomic_load_explicit(&h->slots[i], memory_order_relaxed);
	return n;
}

static bool name_char(char c, bool first, bool colon)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
		return true;
	return !first && c >= '0' && c <= '9';
}

bool metrics_name_valid(const char *name)
{
	if (!name || !name[0])
		return false;
	for (size_t i = 0; name[i]; i++)
		if (!name_char(name[i], i == 0, true))
			return false;
	return true;
}

/* Label names have no colon, and "__" starts the names Prometheus keeps for itself. */
_unused_ static bool label_name_valid(const char *name)
{
	if (!name || !name[0] || strncmp(name, "__", 2) == 0)
		return false;
	for (size_t i = 0; name[i]; i++)
		if (!name_char(name[i], i == 0, false))
			return false;
	return true;
}

static void put(struct metrics_text *t, const char *s, size_t n)
{
	if (t->error < 0)
		return;
	if (t->len + n + 1 > METRICS_TEXT_MAX) {
		t->error = -E2BIG;
		return;
	}
	if (t->len + n + 1 > t->cap) {
		size_t cap = t->cap ? t->cap : 16 * 1024;
		char *p;

		while (cap < t->len + n + 1)
			cap *= 2;
		p = realloc(t->buf, cap);
		if (!p) {
			t->error = -ENOMEM;
			return;
		}
		t->buf = p;
		t->cap = cap;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = 0;
}

static void puts_(struct metrics_text *t, const char *s)
{
	put(t, s, strlen(s));
}

/* quote: also escape the double quote (label values, not HELP text). */
static void put_escaped(struct metrics_text *t, const char *s, bool quote)
{
	const char *run = s;

	for (; *s; s++) {
		const char *esc = NULL;

		if (*s == '\\')
			esc = "\\\\";
		else if (*s == '\n')
			esc = "\\n";
		else if (quote && *s == '"')
			esc = "\\\"";
		if (!esc)
			continue;
		put(t, run, (size_t)(s - run));
		puts_(t, esc);
		run = s + 1;
	}
	put(t, run, (size_t)(s - run));
}

void metrics_text_label_value(struct metrics_text *t, const char *value)
{
	put_escaped(t, value ? value : "", true);
}

void metrics_text_family(struct metrics_text *t, const char *name, const char *type, const char *help)
{
	assert(metrics_name_valid(name));
	puts_(t, "# HELP ");
	puts_(t, name);
	puts_(t, " ");
	put_escaped(t, help, false);
	puts_(t, "\n# TYPE ");
	puts_(t, name);
	puts_(t, " ");
	puts_(t, type);
	puts_(t, "\n");
}

char *metrics_format_value(double v, char *buf, size_t len)
{
	if (isnan(v))
		snprintf(buf, len, "NaN");
	else if (isinf(v))
		snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
	else if (fabs(v) < 0x1p63 && v == (double)(int64_t)v)
		snprintf(buf, len, "%" PRId64, (int64_t)v);
	else {
		/* %.15g is exact for every decimal of up to 15 digits (0.005, a bucket bound); %.17g
		 * for whatever else, so that no value changes on its way to Prometheus. */
		snprintf(buf, len, "%.15g", v);
		if (strtod(buf, NULL) != v)
			snprintf(buf, len, "%.17g", v);
	}
	return buf;
}

/* name{a="x",b="y"} with an optional extra label (le) at the end; nothing between braces when
 * there is no label at all. */
static void put_series(struct metrics_text *t, const char *name, const char *suffix,
		       const struct metrics_label *labels, size_t n_labels, const char *le)
{
	bool any = n_labels > 0 || le;

	assert(metrics_name_valid(name));
	puts_(t, name);
	puts_(t, suffix);
	if (any)
		puts_(t, "{");
	for (size_t i = 0; i < n_labels; i++) {
		assert(label_name_valid(labels[i].name));
		assert(!le || strcmp(labels[i].name, "le") != 0);
		if (i > 0)
			puts_(t, ",");
		puts_(t, labels[i].name);
		puts_(t, "=\"");
		metrics_text_label_value(t, labels[i].value);
		puts_(t, "\"");
	}
	if (le) {
		if (n_labels > 0)
			puts_(t, ",");
		puts_(t, "le=\"");
		puts_(t, le);
		puts_(t, "\"");
	}
	if (any)
		puts_(t, "}");
}

void metrics_text_sample(struct metrics_text *t, const char *name, const struct metrics_label *labels,
			 size_t n_labels, double value)
{
	char v[40];

	put_series(t, name, "", labels, n_labels, NULL);
	puts_(t, " ");
	puts_(t, metrics_format_value(value, v, sizeof(v)));
	puts_(t, "\n");
}

void metrics_text_sample_u64(struct metrics_text *t, const char *name, const struct metrics_label *labels,
			     size_t n_labels, uint64_t value)
{
	char v[24];

	put_series(t, name, "", labels, n_labels, NULL);
	snprintf(v, sizeof(v), " %" PRIu64 "\n", value);
	puts_(t, v);
}

void metrics_text_histogram(struct metrics_text *t, const char *name, const struct metrics_label *labels,
			    size_t n_labels, const struct metrics_histogram *h, const struct metrics_buckets *b)
{
	uint64_t cumulative = 0;
	char le[40], v[40];

	assert(b->n <= METRICS_BUCKETS_MAX);
	for (size_t i = 0; i <= b->n; i++) {
		/* Each slot is read once: the buckets rise, and +Inf is their sum. */
		cumulative += atomic_load_explicit(&h->slots[i], memory_order_relaxed);
		if (i < b->n)
			metrics_format_value((double)b->le_ns[i] / 1e9, le, sizeof(le));
		else
			snprintf(le, sizeof(le), "+Inf");
		put_series(t, name, "_bucket", labels, n_labels, le);
		snprintf(v, sizeof(v), " %" PRIu64 "\n", cumulative);
		puts_(t, v);
	}
	put_series(t, name, "_sum", labels, n_labels, NULL);
	puts_(t, " ");
	puts_(t, metrics_format_value((double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9, v,
				      sizeof(v)));
	puts_(t, "\n");
	put_series(t, name, "_count", labels, n_labels, NULL);
	snprintf(v, sizeof(v), " %" PRIu64 "\n", cumulative);
	puts_(t, v);
}

int metrics_text_take(struct metrics_text *t, char **ret, size_t *ret_len)
{
	int r = t->error;

	if (r == 0 && !t->buf)
		put(t, "", 0);
	r = t->error;
	if (r < 0) {
		metrics_text_done(t);
		return r;
	}
	*ret = t->buf;
	*ret_len = t->len;
	*t = (struct metrics_text){};
	return 0;
}

void metrics_text_done(struct metrics_text *t)
{
	free(t->buf);
	*t = (struct metrics_text){};
}
