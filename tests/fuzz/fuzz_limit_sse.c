/*
 * libFuzzer target: the SSE usage scanner and aigov_limit_usage_tokens().
 *
 * Input: two bytes choosing the scanner's buffer size and a chunk size
 * seed, then the body.  Invariants: feeding the body in chunks of any
 * size gives the same events, skips and usage as feeding it at once; the
 * scanner never writes beyond its buffer (ASan: the buffer is malloc'ed
 * to its exact size) and never holds more than it; the usage it reports
 * is what aigov_limit_usage_fast() says of one of the events.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_limit.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                rc1, rc2;
    char              *buf1, *buf2;
    size_t             bufsize, step, i, n;
    uint64_t           t1, t2;
    const char        *body;
    aigov_limit_sse_t  a, b;

    if (size < 2) {
        return 0;
    }

    bufsize = (size_t) data[0] * 4;
    step = (size_t) (data[1] % 17) + 1;
    body = (const char *) data + 2;
    size -= 2;

    buf1 = malloc(bufsize ? bufsize : 1);
    buf2 = malloc(bufsize ? bufsize : 1);
    if (buf1 == NULL || buf2 == NULL) {
        abort();
    }

    aigov_limit_sse_init(&a, buf1, bufsize);
    aigov_limit_sse_feed(&a, body, size);
    aigov_limit_sse_finish(&a);

    aigov_limit_sse_init(&b, buf2, bufsize);

    for (i = 0; i < size; i += n) {
        /* chunk sizes vary: step, 1, step * 3, ... */
        n = (i / step % 3 == 1) ? 1 : step * (1 + i % 3);
        n = (n > size - i) ? size - i : n;

        aigov_limit_sse_feed(&b, body + i, n);

        if (b.len > b.size) {
            abort();
        }
    }

    aigov_limit_sse_finish(&b);

    t1 = 1;
    t2 = 2;
    rc1 = aigov_limit_sse_usage(&a, &t1);
    rc2 = aigov_limit_sse_usage(&b, &t2);

    if (rc1 != rc2 || a.events != b.events || a.skipped != b.skipped
        || (rc1 == AIGOV_OK && t1 != t2)
        || (rc1 != AIGOV_OK && rc1 != AIGOV_DECLINED))
    {
        abort();
    }

    /* the whole input as one JSON body: must not crash or leak */
    aigov_limit_usage_tokens(body, size, &t1);

    free(buf1);
    free(buf2);

    return 0;
}
