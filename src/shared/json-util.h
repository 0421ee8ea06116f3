/* jansson helpers. They live here and not in src/basic: src/basic includes libc only, so that
 * everything above may use it without pulling in a library. */
#pragma once

#include <jansson.h>

#include "basic/macro.h"

DEFINE_CLEANUP_FUNC(json_util_decrefp, json_t *, json_decref)
