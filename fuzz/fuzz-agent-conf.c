/* libFuzzer harness for agent.conf's parser (agent_conf_parse()): whatever it accepts, the writer's
 * text for it parses back to the same settings, and every string stays within its field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-util.h"
#include "shared/client/agent-conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct agent_conf a, b;
	char err[1024];
	char *text, *again;

	text = fuzz_text(data, size, AGENT_CONF_FILE_MAX);
	if (!text)
		return 0;
	agent_conf_init(&a);
	if (agent_conf_parse(text, "fuzz", &a, err, sizeof(err)) == 0) {
		if (strlen(a.server) >= sizeof(a.server) || strlen(a.vm) >= sizeof(a.vm) ||
		    a.n_include > AGENT_CONF_LIST_MAX || a.n_exclude > AGENT_CONF_LIST_MAX ||
		    a.n_stop_units > AGENT_CONF_LIST_MAX)
			abort();
		again = agent_conf_format(&a);
		if (!again)
			abort();
		agent_conf_init(&b);
		if (agent_conf_parse(again, "fuzz", &b, err, sizeof(err)) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
			abort();
		free(again);
	}
	free(text);
	return 0;
}
