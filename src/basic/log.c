/* Logging: formats a message once and hands it to the sink the program chose (stderr by default). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "string-util.h"

static void stderr_sink(enum log_level level, const char *message, void *userdata)
{
	static const char *const prefix[] = { "error: ", "warning: ", "", "debug: " };

	fprintf(stderr, "%s%s\n", prefix[level], message);
}

static log_sink_fn sink = stderr_sink;
static void *sink_userdata;
static enum log_level max_level = LOG_LEVEL_INFO;

void log_set_sink(log_sink_fn s, void *userdata)
{
	sink = s ? s : stderr_sink;
	sink_userdata = userdata;
}

void log_set_max_level(enum log_level level)
{
	max_level = level;
}

enum log_level log_get_max_level(void)
{
	return max_level;
}

int log_full_errno(enum log_level level, int error, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int saved = errno;

	if (level > max_level)
		return error;

	/* %m must print the error we were given, not whatever errno happens to hold. */
	errno = error < 0 ? -error : saved;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	errno = saved;

	/* Messages carry names and text from outside (a hostname, a file name, an old store's
	 * rows): a newline would forge a log line, a bidi override would reorder it. The sink gets
	 * one line of visible characters. */
	if (!string_is_safe_text(buf)) {
		char esc[sizeof(buf) * 2];

		sink(level, string_escape_hidden(buf, esc, sizeof(esc)), sink_userdata);
		return error;
	}
	sink(level, buf, sink_userdata);
	return error;
}
