/* libFuzzer harness for vmcryptd's request parsing, the way the server runs it: input is
 * "METHOD TARGET\n" followed by the body, every byte as given (NULs too). The raw target goes
 * through api_target_check(), its path through libmicrohttpd's own decoder, then
 * api_request_parse(). Any route, target, name, JSON shape or size must be rejected or accepted
 * without a sanitizer report; accepted requests must carry a route and, when the route takes a
 * JSON body, a JSON object; nothing accepted may hold a NUL or an encoded slash, but for the raw
 * bytes of a route that takes them (a header backup), which are never parsed. */
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/api/api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size), *sp;
	char method[16], path[512], err[512] = "";
	struct api_request req = {};
	const char *body;
	size_t llen, tlen, plen, blen;
	const char *target, *q;
	int r;

	if (!nl)
		return 0;
	llen = (size_t)(nl - data);
	/* The method is the token before the first space; the rest of the line is the target. */
	sp = memchr(data, ' ', llen);
	if (!sp || (size_t)(sp - data) >= sizeof(method))
		return 0;
	memcpy(method, data, (size_t)(sp - data));
	method[sp - data] = 0;
	target = (const char *)sp + 1;
	tlen = llen - (size_t)(sp - data) - 1;

	r = api_target_check(target, tlen, err, sizeof(err));
	if (r < 0) {
		assert(r == -EINVAL || r == -ENOENT);
		assert(err[0]);
		return 0;
	}
	/* What passed has no NUL, raw or encoded, and no encoded slash in its path. */
	assert(!memchr(target, 0, tlen));
	q = memchr(target, '?', tlen);
	plen = q ? (size_t)(q - target) : tlen;
	if (plen >= sizeof(path))
		return 0;
	memcpy(path, target, plen);
	path[plen] = 0;
	MHD_http_unescape(path);
	assert(strlen(path) > 0);

	/* The body in its own allocation, so ASan sees reads past its end. */
	blen = size - llen - 1;
	body = blen ? memcpy(malloc(blen), nl + 1, blen) : "";
	r = api_request_parse(method, path, body, blen, &req, err, sizeof(err));
	if (r == 0) {
		assert(req.def);
		assert(!req.def->body || json_is_object(req.body));
		assert(!req.body || req.def->body);
		assert(req.def->raw_max ? blen >= 1 && blen <= req.def->raw_max : !memchr(body, 0, blen));
		assert(!strstr(path, "//") && path[strlen(path) - 1] != '/');
	} else {
		assert(err[0]);
	}
	api_request_done(&req);
	if (blen)
		free((void *)body);
	return 0;
}
