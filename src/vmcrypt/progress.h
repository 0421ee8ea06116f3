/* Progress of long work: a bar with percent, rate and ETA on a terminal; JSON lines with --json;
 * a line every few seconds otherwise (logs). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct progress {
	bool json;
	bool tty;
	const char *operation;   /* "encrypt", "decrypt", "resume" */
	const char *target;
	const char *phase;
	struct timespec start;
	double phase_start;      /* seconds since start when the current phase began */
	double last_print;
	double rate;             /* smoothed bytes/s */
	double last_t;
	uint64_t last_done;
	double percent;
	double eta;
	bool bar_open;           /* a bar line without newline is on the terminal */
};

void progress_init(struct progress *p, bool json, const char *operation, const char *target);

/* Records that phase has done bytes of total and prints when due (every 0.2 s on a terminal,
 * 1 s in JSON, 5 s in logs, and at every phase change). Returns nothing; printing never fails
 * the operation. */
void progress_update(struct progress *p, const char *phase, uint64_t done, uint64_t total);

/* Ends the bar line, if one is open. */
void progress_end(struct progress *p);

/* Seconds since progress_init(). */
double progress_elapsed(const struct progress *p);
