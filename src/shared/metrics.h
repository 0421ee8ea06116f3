/* Prometheus metrics without a client library: lock-free counters and histograms that many
 * threads update at once, and a writer of the text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/). */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "basic/macro.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* The most an exposition may grow to: a writer past it fails with -E2BIG instead of taking
 * memory without end. vmcryptd's series are bounded by its route table, well below this. */
#define METRICS_TEXT_MAX (4 * 1024 * 1024)
/* Upper bounds of one histogram, +Inf not counted. */
#define METRICS_BUCKETS_MAX 16

/* A counter: only grows. Relaxed atomics: each update is one lock-free add, and a scrape needs
 * no ordering between different counters. */
struct metrics_counter {
	_Atomic uint64_t value;
};

static inline void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}
static inline void metrics_counter_inc(struct metrics_counter *c)
{
	metrics_counter_add(c, 1);
}
static inline uint64_t metrics_counter_get(const struct metrics_counter *c)
{
	return atomic_load_explicit(&c->value, memory_order_relaxed);
}

/* Bucket upper bounds of a family of histograms, in nanoseconds (observations are durations),
 * ascending; shared by every histogram of the family. */
struct metrics_buckets {
	size_t n;                               /* at most METRICS_BUCKETS_MAX */
	uint64_t le_ns[METRICS_BUCKETS_MAX];
};

/* A histogram of durations. Each observation lands in one (non-cumulative) slot; the writer
 * sums them into the cumulative buckets of the format, and _count is the +Inf bucket's sum, so
 * the two always agree within one scrape even while other threads observe. _sum is kept apart
 * and may lag by the observations in flight at the scrape. */
struct metrics_histogram {
	_Atomic uint64_t slots[METRICS_BUCKETS_MAX + 1]; /* the last one: above every bound (+Inf) */
	_Atomic uint64_t sum_ns;
};

/* Records one duration. Thread-safe, lock-free: two relaxed adds. */
void metrics_histogram_observe(struct metrics_histogram *h, const struct metrics_buckets *b, uint64_t ns);
/* Observations so far (the +Inf bucket). */
uint64_t metrics_histogram_count(const struct metrics_histogram *h, const struct metrics_buckets *b);

/* CLOCK_MONOTONIC in nanoseconds, for durations. */
uint64_t metrics_now_ns(void);

/* A label: a name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__") and any UTF-8 value, which
 * the writer escapes. */
struct metrics_label {
	const char *name;
	const char *value;
};

/* The exposition under construction: malloc'd text. The first failure sticks (error) and every
 * later call does nothing, so a caller writes everything and checks once, at metrics_text_take(). */
struct metrics_text {
	char *buf;
	size_t len, cap;
	int error; /* 0, -ENOMEM, -E2BIG (over METRICS_TEXT_MAX) */
};

/* "# HELP name help" and "# TYPE name type" before a family's samples. type: "counter",
 * "gauge", "histogram" (or "untyped"); help is escaped. A name must be valid
 * ([a-zA-Z_:][a-zA-Z0-9_:]*); an invalid name or label name is a programmer error (assert). */
void metrics_text_family(struct metrics_text *t, const char *name, const char *type, const char *help);
/* One sample line: name{labels} value. n_labels may be 0 (labels NULL). */
void metrics_text_sample(struct metrics_text *t, const char *name, const struct metrics_label *labels,
			 size_t n_labels, double value);
/* The same for an integer, written exactly (a double has 53 bits). */
void metrics_text_sample_u64(struct metrics_text *t, const char *name, const struct metrics_label *labels,
			     size_t n_labels, uint64_t value);
/* A histogram's samples: name_bucket{labels,le="..."} cumulative for every bound and +Inf, then
 * name_sum (seconds) and name_count. The family line goes before, once, by the caller. Up to 7
 * labels besides le. */
void metrics_text_histogram(struct metrics_text *t, const char *name, const struct metrics_label *labels,
			    size_t n_labels, const struct metrics_histogram *h, const struct metrics_buckets *b);
/* Hands over the text (NUL-terminated, *ret_len bytes before the NUL), or the first error, after
 * which the text is freed. Either way t is empty afterwards. */
int metrics_text_take(struct metrics_text *t, char **ret, size_t *ret_len);
void metrics_text_done(struct metrics_text *t);

/* Escaping of the format, exposed for tests: a label value escapes backslash, double quote and
 * line feed (\\ \" \n); HELP text escapes backslash and line feed. */
void metrics_text_label_value(struct metrics_text *t, const char *value);
/* A sample value as the format spells it: +Inf, -Inf, NaN, an integer when the double is one,
 * otherwise the shortest of %.15g and %.17g that reads back as the same double. buf: at least
 * 32 bytes. */
char *metrics_format_value(double v, char *buf, size_t len);
/* Whether name is a valid metric name. */
bool metrics_name_valid(const char *name);
