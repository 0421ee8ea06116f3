/* libFuzzer harness for vmcryptd's request parser (api_request_parse): input is
 * "METHOD PATH\n" followed by the body. Any route, name, JSON shape or size must be rejected or
 * accepted without a sanitizer report; accepted requests must carry a route and, when the route
 * takes a body, a JSON object. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	char line[512], method[16], err[512];
	struct api_request req;
	const char *sp, *body;
	size_t llen, blen;
	int r;

	if (!nl || (size_t)(nl - data) >= sizeof(line))
		return 0;
	llen = (size_t)(nl - data);
	memcpy(line, data, llen);
	line[llen] = 0;
	if (strlen(line) != llen)
		return 0; /* HTTP never gives us a NUL in the request line */
	sp = strchr(line, ' ');
	if (!sp || (size_t)(sp - line) >= sizeof(method))
		return 0;
	memcpy(method, line, (size_t)(sp - line));
	method[sp - line] = 0;

	/* The body in its own allocation, so ASan sees reads past its end. */
	blen = size - llen - 1;
	body = blen ? memcpy(malloc(blen), nl + 1, blen) : "";
	r = api_request_parse(method, sp + 1, body, blen, &req, err, sizeof(err));
	if (r == 0) {
		assert(req.def);
		assert(!req.def->body || json_is_object(req.body));
		assert(!req.body || req.def->body);
	} else {
		assert(err[0]);
	}
	api_request_done(&req);
	if (blen)
		free((void *)body);
	return 0;
}
