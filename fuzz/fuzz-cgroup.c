/* libFuzzer harness for the holding-unit parsers (units.c): /proc/PID/cgroup text and the cgroup
 * path in it. Cgroup names below a delegated cgroup (user sessions, containers) are chosen by
 * unprivileged users, and the unit they name ends up in systemctl's argv and in status text:
 * whatever the input, a stoppable holder's unit is a valid .service name, and the description is
 * bounded safe text. */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic/string-util.h"
#include "fuzz-util.h"
#include "shared/agent/units.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct unit_holder h = { .pid = 1 };
	char path[PATH_MAX], desc[300], units[1][UNITS_NAME_MAX], why[300];
	size_t n = 0;
	char *text;
	int r;

	text = fuzz_text(data, size, 65536);
	if (!text)
		return 0;
	r = units_cgroup_path(text, path, sizeof(path));
	if (r == 0) {
		assert(strlen(path) < sizeof(path));
		units_classify(path, &h);
		assert(strlen(h.unit) < sizeof(h.unit) && strlen(h.stop_unit) < sizeof(h.stop_unit));
		assert(h.stoppable == (h.stop_unit[0] != 0));
		if (h.stoppable) {
			size_t l = strlen(h.stop_unit);
			assert(l > 8 && strcmp(h.stop_unit + l - 8, ".service") == 0);
			assert(!strpbrk(h.stop_unit, " \t\n/") && h.stop_unit[0] != 0);
		}
		snprintf(h.comm, sizeof(h.comm), "%.63s", text);
		units_describe(&h, 1, desc, sizeof(desc));
		assert(strlen(desc) < sizeof(desc) && string_is_safe_text(desc));
		r = units_plan_stop(&h, 1, true, NULL, 0, units, 1, &n, why, sizeof(why));
		assert(r == 0 || r == -EBUSY);
		assert(string_is_safe_text(why));
		if (r == 0)
			assert(n == 1 && strcmp(units[0], h.stop_unit) == 0);
	}
	free(text);
	return 0;
}
