/*
 * libFuzzer target: the shadow's HTTP/1.x response reader on arbitrary
 * bytes (what a broken or hostile shadow backend may send).
 *
 * The input is fed three ways: whole, byte by byte, and in pieces of the
 * sizes the first byte picks.  Invariants: the three readings agree on the
 * outcome, the status and the kept body; the kept body never exceeds
 * max_body nor the bytes seen; an error always comes with a reason; after
 * DONE or ERROR the reader ignores further input; eof() never crashes.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_shadow.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
run(aigov_http_resp_t *r, const char *s, size_t size, size_t step)
{
    int     rc;
    size_t  i, n;

    rc = AIGOV_HTTP_AGAIN;

    for (i = 0; i < size && rc == AIGOV_HTTP_AGAIN; i += n) {
        n = (size - i < step) ? size - i : step;
        rc = aigov_http_resp_feed(r, s + i, n);
    }

    if (rc == AIGOV_HTTP_AGAIN) {
        rc = aigov_http_resp_eof(r);
    }

    if (rc == AIGOV_HTTP_ERROR && r->error == NULL) {
        abort();
    }

    if (r->body_len > r->max_body || r->body_len > r->body_total
        || (r->body_total > r->body_len && !r->truncated))
    {
        abort();
    }

    /* sticky outcome */
    if (aigov_http_resp_feed(r, "HTTP/1.1 200 OK\r\n\r\n", 19) != rc) {
        abort();
    }

    return rc;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc1, rc2, rc3;
    size_t              step, max_body;
    const char         *s;
    aigov_http_resp_t  *a, *b, *c;

    if (size < 1) {
        return 0;
    }

    step = (data[0] & 0x3f) + 1;
    max_body = (data[0] & 0x40) ? 16 : 4096;
    s = (const char *) data + 1;
    size--;

    a = malloc(sizeof(aigov_http_resp_t));
    b = malloc(sizeof(aigov_http_resp_t));
    c = malloc(sizeof(aigov_http_resp_t));

    if (a == NULL || b == NULL || c == NULL) {
        abort();
    }

    aigov_http_resp_init(a, max_body, data[0] & 0x80);
    aigov_http_resp_init(b, max_body, data[0] & 0x80);
    aigov_http_resp_init(c, max_body, data[0] & 0x80);

    rc1 = run(a, s, size, size ? size : 1);
    rc2 = run(b, s, size, 1);
    rc3 = run(c, s, size, step);

    if (rc1 != rc2 || rc1 != rc3) {
        abort();
    }

    if (rc1 == AIGOV_HTTP_DONE
        && (a->status != b->status || a->status != c->status
            || a->body_len != b->body_len || a->body_len != c->body_len
            || (a->body_len && (memcmp(a->body, b->body, a->body_len) != 0
                                || memcmp(a->body, c->body, a->body_len)
                                   != 0))
            || a->status < 200 || a->status > 999))
    {
        abort();
    }

    aigov_http_resp_free(a);
    aigov_http_resp_free(b);
    aigov_http_resp_free(c);
    free(a);
    free(b);
    free(c);

    return 0;
}
