/* OpenSSL's error queue, read in this one place. */
#include <openssl/err.h>

#include "basic/log.h"
#include "shared/openssl-util.h"

const char *openssl_util_drain(char *buf, size_t size)
{
	unsigned long e = ERR_get_error();

	buf[0] = 0;
	if (e)
		ERR_error_string_n(e, buf, size);
	ERR_clear_error();
	return buf;
}

int openssl_util_error(int error, const char *what)
{
	char buf[256];

	openssl_util_drain(buf, sizeof(buf));
	log_debug("OpenSSL: %s failed: %s", what, buf[0] ? buf : "(no detail)");
	return error;
}
