/*
 * libFuzzer target: aigov_canon() on arbitrary bytes.
 *
 * Invariants: the result is one of the documented codes; on success the
 * streamed output equals aigov_canon_dup()'s, is itself canonical
 * (canonicalising it again gives the same bytes) and nothing was written on
 * failure; whatever jansson accepts as a document (duplicates refused,
 * any root, no NUL byte outside strings) is never called invalid: at worst
 * too deep or out of range (jansson rounds such numbers).  LeakSanitizer checks the arena is freed on every
 * path.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_canon.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    char    *buf;
    size_t   len;
    size_t   size;
} fuzz_sink_t;


static void
fuzz_write(void *data, const char *p, size_t len)
{
    fuzz_sink_t  *s = data;

    if (len == 0 || len > 4096) {
        abort();
    }

    if (s->len + len > s->size) {
        s->size = (s->len + len) * 2;
        s->buf = realloc(s->buf, s->size);
        if (s->buf == NULL) {
            abort();
        }
    }

    memcpy(s->buf + s->len, p, len);
    s->len += len;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int           rc, rc2;
    char         *dup, *again, err[128];
    size_t        dlen, alen;
    json_t       *j;
    fuzz_sink_t   s;

    memset(&s, 0, sizeof(s));

    rc = aigov_canon((const char *) data, size, fuzz_write, &s, err,
                     sizeof(err));

    switch (rc) {

    case AIGOV_CANON_OK:
        dup = aigov_canon_dup((const char *) data, size, &dlen, &rc2, NULL, 0);
        if (dup == NULL || rc2 != AIGOV_CANON_OK || dlen != s.len
            || memcmp(dup, s.buf, dlen) != 0 || dup[dlen] != '\0')
        {
            abort();
        }

        again = aigov_canon_dup(dup, dlen, &alen, &rc2, NULL, 0);
        if (again == NULL || alen != dlen || memcmp(again, dup, dlen) != 0) {
            abort();
        }

        free(again);
        free(dup);
        break;

    case AIGOV_CANON_INVALID:
    case AIGOV_CANON_TOO_DEEP:
    case AIGOV_CANON_RANGE:
        if (s.len != 0 || memchr(err, '\0', sizeof(err)) == NULL
            || err[0] == '\0')
        {
            abort();
        }

        /* jansson skips a NUL byte after a number: leave those out */
        j = memchr(data, '\0', size) ? NULL
            : json_loadb((const char *) data, size,
                         JSON_DECODE_ANY | JSON_REJECT_DUPLICATES
                         | JSON_ALLOW_NUL, NULL);
        if (j) {
            json_decref(j);

            /* jansson rounds huge exponents to 0 or refuses them */
            if (rc == AIGOV_CANON_INVALID) {
                abort();
            }
        }

        break;

    default:
        abort();
    }

    free(s.buf);

    return 0;
}
