/* The agent's engine (docs/agent.md "What the agent does"): resumes unfinished work, polls the
 * goal, applies it to the data volumes, runs their conversions in the background and reports.
 * `vmcrypt agent` is a thin loop around it. */
#pragma once

#include <signal.h>
#include <stdbool.h>

struct agent_conf;
struct agent_engine;

struct agent_engine_options {
	const struct agent_conf *conf;
	const void *credential;
	size_t credential_size;
	const char *agent_version;
	bool once;      /* apply the goal once, wait for every conversion, report, return */
};

/* Creates the engine: loads the state, makes the vault client. Returns 0 or -errno with the
 * reason in err. */
int agent_engine_new(const struct agent_engine_options *o, struct agent_engine **ret, char *err,
		     size_t errlen);
void agent_engine_free(struct agent_engine *e);

/* Runs until *stop becomes non-zero (SIGTERM, SIGINT): then running conversions stop at their
 * next safe point, the state is saved and a last report sent. Returns 0, or -errno when the
 * engine cannot go on at all (its state file cannot be written). */
int agent_engine_run(struct agent_engine *e, volatile sig_atomic_t *stop);
