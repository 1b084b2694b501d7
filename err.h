/* err.h - the one error convention: functions that can fail take a
 * char err[HEARTH_ERR_BYTES], write one line naming what was wrong and where
 * (file, field, offset) into it, and return -1. Nothing here prints or exits. */
#ifndef HEARTH_ERR_H
#define HEARTH_ERR_H

#include <stdarg.h>
#include <stdio.h>

#define HEARTH_ERR_BYTES 512

/* Formats the message into err (if err is not NULL) and returns -1, so that
 * callers can write `return fail(err, "...", ...);`. */
static inline int fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, HEARTH_ERR_BYTES, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif
