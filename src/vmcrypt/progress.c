/* Progress of long work, for people (a bar) and for programs (JSON lines). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "basic/string-util.h"
#include "progress.h"
#include "shared/jansson-util.h"

static double now_s(const struct progress *p)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - p->start.tv_sec) + (double)(t.tv_nsec - p->start.tv_nsec) / 1e9;
}

double progress_elapsed(const struct progress *p)
{
	return now_s(p);
}

void progress_init(struct progress *p, bool json, const char *operation, const char *target)
{
	memset(p, 0, sizeof(*p));
	p->json = json;
	p->tty = !json && isatty(STDERR_FILENO);
	p->operation = operation;
	p->target = target;
	p->phase = "";
	p->percent = -1;
	p->eta = -1;
	clock_gettime(CLOCK_MONOTONIC, &p->start);
}

void progress_end(struct progress *p)
{
	if (p->bar_open) {
		fputc('\n', stderr);
		p->bar_open = false;
	}
}

static void print_json(struct progress *p, uint64_t done, uint64_t total)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:f}", "event", "progress",
			      "operation", p->operation, "target", p->target, "phase", p->phase,
			      "bytes_done", (json_int_t)done, "bytes_total", (json_int_t)total,
			      "percent", p->percent < 0 ? 0.0 : p->percent, "rate_mib_s",
			      p->rate / 1048576.0, "eta_seconds", p->eta < 0 ? 0.0 : p->eta,
			      "elapsed_seconds", now_s(p));

	(void)jansson_util_write(stdout, o, JSON_COMPACT);
	json_decref(o);
}

static void print_bar(struct progress *p, bool newline)
{
	char eta[32] = "--", bar[31];
	int fill = p->percent < 0 ? 0 : (int)(p->percent * 30 / 100);

	if (p->percent < 0) {
		/* A step without a measure (the filesystem check): its name is the news. */
		progress_end(p);
		fprintf(stderr, "%-8s %s\n", p->phase, p->target);
		fflush(stderr);
		return;
	}
	for (int i = 0; i < 30; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[30] = 0;
	if (p->eta >= 0)
		format_duration(eta, sizeof(eta), (uint64_t)(p->eta + 0.5));
	fprintf(stderr, "%s%-8s %s [%s] %5.1f%%  %7.1f MiB/s  ETA %s%s", p->tty ? "\r" : "", p->phase,
		p->target, bar, p->percent < 0 ? 0.0 : p->percent, p->rate / 1048576.0, eta,
		p->tty ? "\033[K" : "");
	if (newline || !p->tty)
		fputc('\n', stderr);
	p->bar_open = p->tty && !newline;
	fflush(stderr);
}

void progress_update(struct progress *p, const char *phase, uint64_t done, uint64_t total)
{
	double t = now_s(p);
	bool changed = strcmp(phase, p->phase) != 0;
	double every = p->json ? 1.0 : p->tty ? 0.2 : 5.0;
	bool finished = total && done >= total;

	if (changed) {
		if (p->bar_open)
			progress_end(p);
		p->phase = phase;
		p->phase_start = t;
		p->last_t = t;
		p->last_done = done;
		p->rate = 0;
	} else if (t > p->last_t && done >= p->last_done) {
		/* Exponential smoothing over about 3 s: steady enough to read, quick to follow. */
		double inst = (double)(done - p->last_done) / (t - p->last_t);
		double a = (t - p->last_t) / 3.0;

		if (a > 1)
			a = 1;
		p->rate = p->rate == 0 ? inst : p->rate + a * (inst - p->rate);
		p->last_t = t;
		p->last_done = done;
	}
	p->percent = total ? 100.0 * (double)done / (double)total : -1;
	p->eta = total && p->rate > 0 ? (double)(total - (done < total ? done : total)) / p->rate : -1;
	if (!changed && !finished && t - p->last_print < every)
		return;
	p->last_print = t;
	if (p->json)
		print_json(p, done, total);
	else if (total || changed)
		print_bar(p, finished);
}
