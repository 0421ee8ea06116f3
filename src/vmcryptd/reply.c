/* Error replies: the one mapping from errno values to HTTP statuses, and the message a handler
 * leaves for the client. Below both the front (http.c) and authentication (auth.c), which each
 * answer with them. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "vmcryptd.h"

/* The one place where errno values become HTTP statuses. */
unsigned reply_status_from_errno(int error)
{
	switch (-error) {
	case 0:
		return MHD_HTTP_OK;
	case EINVAL:
	case EPROTONOSUPPORT:
	case EMSGSIZE:
	case EBADMSG:
		return MHD_HTTP_BAD_REQUEST;
	case ENOKEY:
	case EKEYREJECTED:
		return MHD_HTTP_UNAUTHORIZED;
	case EACCES:
	case EPERM:
	case EKEYREVOKED:
		return MHD_HTTP_FORBIDDEN;
	case ENOENT:
		return MHD_HTTP_NOT_FOUND;
	case ENOTSUP:
		return MHD_HTTP_METHOD_NOT_ALLOWED;
	case EEXIST:
	case EALREADY:
	case ENOTEMPTY:
	case EKEYEXPIRED:
		return MHD_HTTP_CONFLICT;
	case EFBIG:
		return MHD_HTTP_CONTENT_TOO_LARGE;
	case ENODATA: /* a body of unknown length (chunked) where the length must come first */
		return MHD_HTTP_LENGTH_REQUIRED;
	case EUSERS: /* a source locked out after failed authentications */
		return MHD_HTTP_TOO_MANY_REQUESTS;
	case EBUSY:
	case EAGAIN:
	case ETIMEDOUT:
	/* The store's PostgreSQL is out of reach or failing over, or is a standby that takes no
	 * writes yet: the VM's retry is likely to find it (or the promoted one) back. */
	case ECONNREFUSED:
	case ECONNRESET:
	case EROFS:
		return MHD_HTTP_SERVICE_UNAVAILABLE;
	default:
		return MHD_HTTP_INTERNAL_SERVER_ERROR;
	}
}

int reply_error(struct reply *rep, int error, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rep->message, sizeof(rep->message), fmt, ap);
	va_end(ap);
	return error;
}

void reply_field(struct reply *rep, const char *name, const char *fmt, ...)
{
	va_list ap;

	for (size_t i = 0; i < REPLY_FIELDS_MAX; i++) {
		if (rep->fields[i].name)
			continue;
		rep->fields[i].name = name;
		va_start(ap, fmt);
		vsnprintf(rep->fields[i].value, sizeof(rep->fields[i].value), fmt, ap);
		va_end(ap);
		return;
	}
	assert(!"more reply fields than REPLY_FIELDS_MAX");
}
