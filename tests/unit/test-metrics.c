/* Unit tests for src/shared/metrics.c: the text exposition format (HELP and TYPE lines, label
 * and HELP escaping, value spelling, cumulative histogram buckets with +Inf, _sum and _count),
 * and counters and histograms updated from many threads at once. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "shared/metrics.h"

static char *take(struct metrics_text *t)
{
	char *text = NULL;
	size_t n = 0;

	assert_int_equal(metrics_text_take(t, &text, &n), 0);
	assert_non_null(text);
	assert_int_equal(strlen(text), n);
	return text;
}

static void test_family_and_samples(void **state)
{
	struct metrics_text t = {};
	struct metrics_label l[] = { { "route", "/v1/vm/secrets/{volume}" }, { "method", "GET" } };
	char *text;

	metrics_text_family(&t, "vmcryptd_secret_reads_total", "counter", "Secrets read.");
	metrics_text_sample_u64(&t, "vmcryptd_secret_reads_total", l, 2, 18446744073709551615u);
	metrics_text_sample_u64(&t, "vmcryptd_secret_reads_total", NULL, 0, 0);
	text = take(&t);
	assert_string_equal(text, "# HELP vmcryptd_secret_reads_total Secrets read.\n"
				  "# TYPE vmcryptd_secret_reads_total counter\n"
				  "vmcryptd_secret_reads_total{route=\"/v1/vm/secrets/{volume}\",method=\"GET\"} "
				  "18446744073709551615\n"
				  "vmcryptd_secret_reads_total 0\n");
	free(text);
	/* Taken: the writer is empty again, and an empty exposition is an empty string. */
	assert_null(t.buf);
	text = take(&t);
	assert_string_equal(text, "");
	free(text);
}

static void test_escaping(void **state)
{
	struct metrics_text t = {};
	struct metrics_label l[] = { { "version", "a\\b\"c\nd" } };
	char *text;

	/* HELP: backslash and line feed only; a double quote stays as it is. */
	metrics_text_family(&t, "x", "gauge", "say \"hi\"\\now\nnext line");
	metrics_text_sample(&t, "x", l, 1, 1);
	text = take(&t);
	assert_string_equal(text, "# HELP x say \"hi\"\\\\now\\nnext line\n"
				  "# TYPE x gauge\n"
				  "x{version=\"a\\\\b\\\"c\\nd\"} 1\n");
	free(text);

	metrics_text_label_value(&t, "");
	metrics_text_label_value(&t, NULL);
	metrics_text_label_value(&t, "\\\\\n\"plain");
	text = take(&t);
	assert_string_equal(text, "\\\\\\\\\\n\\\"plain");
	free(text);
}

static void test_values(void **state)
{
	char buf[40];

	assert_string_equal(metrics_format_value(0, buf, sizeof(buf)), "0");
	assert_string_equal(metrics_format_value(-0.0, buf, sizeof(buf)), "0");
	assert_string_equal(metrics_format_value(1765432101, buf, sizeof(buf)), "1765432101");
	assert_string_equal(metrics_format_value(-3, buf, sizeof(buf)), "-3");
	assert_string_equal(metrics_format_value(0.005, buf, sizeof(buf)), "0.005");
	assert_string_equal(metrics_format_value(2.5, buf, sizeof(buf)), "2.5");
	assert_string_equal(metrics_format_value(1e-9, buf, sizeof(buf)), "1e-09");
	assert_string_equal(metrics_format_value(INFINITY, buf, sizeof(buf)), "+Inf");
	assert_string_equal(metrics_format_value(-INFINITY, buf, sizeof(buf)), "-Inf");
	assert_string_equal(metrics_format_value(NAN, buf, sizeof(buf)), "NaN");
	/* No double changes on its way out. */
	assert_true(strtod(metrics_format_value(0.1 + 0.2, buf, sizeof(buf)), NULL) == 0.1 + 0.2);
	assert_true(strtod(metrics_format_value(1.0 / 3, buf, sizeof(buf)), NULL) == 1.0 / 3);
	assert_true(strtod(metrics_format_value(1e300, buf, sizeof(buf)), NULL) == 1e300);
}

static void test_names(void **state)
{
	assert_true(metrics_name_valid("vmcryptd_http_request_duration_seconds"));
	assert_true(metrics_name_valid("a:b_c"));
	assert_true(metrics_name_valid("_x9"));
	assert_false(metrics_name_valid("9x"));
	assert_false(metrics_name_valid("a-b"));
	assert_false(metrics_name_valid("a b"));
	assert_false(metrics_name_valid(""));
	assert_false(metrics_name_valid(NULL));
}

static const struct metrics_buckets BUCKETS = { 3, { 1000000, 10000000, 1000000000 } }; /* 1 ms, 10 ms, 1 s */

static void test_histogram(void **state)
{
	struct metrics_histogram h = {};
	struct metrics_text t = {};
	struct metrics_label l[] = { { "route", "/metrics" }, { "code", "2xx" } };
	char *text;

	/* Empty: every bucket 0, +Inf too, _sum and _count 0. */
	metrics_text_histogram(&t, "d_seconds", NULL, 0, &h, &BUCKETS);
	text = take(&t);
	assert_string_equal(text, "d_seconds_bucket{le=\"0.001\"} 0\n"
				  "d_seconds_bucket{le=\"0.01\"} 0\n"
				  "d_seconds_bucket{le=\"1\"} 0\n"
				  "d_seconds_bucket{le=\"+Inf\"} 0\n"
				  "d_seconds_sum 0\n"
				  "d_seconds_count 0\n");
	free(text);

	metrics_histogram_observe(&h, &BUCKETS, 500000);     /* 0.5 ms: the first bucket */
	metrics_histogram_observe(&h, &BUCKETS, 1000000);    /* exactly 1 ms: le is "less or equal" */
	metrics_histogram_observe(&h, &BUCKETS, 5000000);    /* 5 ms */
	metrics_histogram_observe(&h, &BUCKETS, 2000000000); /* 2 s: above every bound */
	assert_int_equal(metrics_histogram_count(&h, &BUCKETS), 4);
	metrics_text_histogram(&t, "d_seconds", l, 2, &h, &BUCKETS);
	text = take(&t);
	/* Cumulative, +Inf equals _count, _sum in seconds. */
	assert_string_equal(text, "d_seconds_bucket{route=\"/metrics\",code=\"2xx\",le=\"0.001\"} 2\n"
				  "d_seconds_bucket{route=\"/metrics\",code=\"2xx\",le=\"0.01\"} 3\n"
				  "d_seconds_bucket{route=\"/metrics\",code=\"2xx\",le=\"1\"} 3\n"
				  "d_seconds_bucket{route=\"/metrics\",code=\"2xx\",le=\"+Inf\"} 4\n"
				  "d_seconds_sum{route=\"/metrics\",code=\"2xx\"} 2.0065\n"
				  "d_seconds_count{route=\"/metrics\",code=\"2xx\"} 4\n");
	free(text);
}

#define THREADS 8
#define ROUNDS 20000

struct shared {
	struct metrics_counter c;
	struct metrics_histogram h;
};

static void *hammer(void *p)
{
	struct shared *s = p;

	for (unsigned i = 0; i < ROUNDS; i++) {
		metrics_counter_inc(&s->c);
		metrics_histogram_observe(&s->h, &BUCKETS, (uint64_t)(i % 4) * 1000000);
	}
	return NULL;
}

/* Lock-free updates from many threads lose nothing. */
static void test_threads(void **state)
{
	struct shared *s = calloc(1, sizeof(*s));
	pthread_t th[THREADS];

	assert_non_null(s);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, hammer, s), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(metrics_counter_get(&s->c), THREADS * ROUNDS);
	assert_int_equal(metrics_histogram_count(&s->h, &BUCKETS), THREADS * ROUNDS);
	/* 0 and 1 ms in the first bucket, 2 and 3 ms in the second. */
	assert_int_equal(atomic_load(&s->h.slots[0]), THREADS * ROUNDS / 2);
	assert_int_equal(atomic_load(&s->h.slots[1]), THREADS * ROUNDS / 2);
	assert_int_equal(atomic_load(&s->h.sum_ns), (uint64_t)THREADS * (ROUNDS / 4) * 6000000);
	free(s);
}

/* The cap: a writer past METRICS_TEXT_MAX fails whole, and keeps failing. */
static void test_cap(void **state)
{
	struct metrics_text t = {};
	char *text = NULL;
	size_t n = 0;

	for (unsigned i = 0; i < METRICS_TEXT_MAX / 16 + 1; i++)
		metrics_text_sample_u64(&t, "abcdefgh", NULL, 0, 1234567);
	assert_int_equal(t.error, -E2BIG);
	assert_int_equal(metrics_text_take(&t, &text, &n), -E2BIG);
	assert_null(text);
	assert_null(t.buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_family_and_samples),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
