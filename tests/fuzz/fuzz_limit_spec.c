/*
 * libFuzzer target: the limit spec parsers and what is built on a spec.
 *
 * Input: "RATE[\nBURST[\nCOSTS]]".  Invariants: on error the spec / burst
 * is untouched and the message is non-empty and NUL terminated; on OK the
 * spec is in range and its canonical form ("<rate><r|t>/<seconds>s")
 * parses back to the same spec.  With a spec, a GCRA from a full bucket
 * allows the first min(burst, 64) unit takes, never lets remaining grow
 * within one instant, and after retry_after_ms the denied take passes;
 * costs from the input are taken and charged without crossing the
 * saturation points; every header formatter fits its buffer or returns 0.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_limit.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
check_err(const char *err, size_t size)
{
    size_t  n;

    n = strnlen(err, size);

    if (n == 0 || n == size) {
        abort();
    }
}


static void
check_format(size_t n, const char *buf, size_t size)
{
    if (n == 0) {
        if (size > 0 && buf[0] != '\0') {
            abort();
        }
        return;
    }

    if (n >= size || buf[n] != '\0' || strlen(buf) != n) {
        abort();
    }
}


static void
check_headers(const aigov_limit_spec_t *sp, const aigov_limit_result_t *r,
    size_t size)
{
    int                   i;
    char                  buf[512];
    size_t                n;
    aigov_limit_policy_t  p;
    aigov_limit_header_t  h[3];

    size %= sizeof(buf);

    p.name.data = "per-key";
    p.name.len = 7;
    p.spec = sp;
    p.result = r;

    n = aigov_limit_format_policy(buf, size, &p, 1);
    check_format(n, buf, size);

    n = aigov_limit_format_ratelimit(buf, size, &p, 1);
    check_format(n, buf, size);

    n = aigov_limit_format_duration(buf, size, r->reset_ms);
    check_format(n, buf, size);

    n = aigov_limit_format_retry_after(buf, size, r->retry_after_ms);
    check_format(n, buf, size);

    n = aigov_limit_format_openai(buf, size, sp, r, h);

    if (n != 0) {
        check_format(n, buf, size);

        for (i = 0; i < 3; i++) {
            if (h[i].value.data < buf || h[i].value.len == 0
                || h[i].value.data + h[i].value.len > buf + n)
            {
                abort();
            }
        }
    }

    /* with room enough, everything fits */
    if (aigov_limit_format_policy(buf, sizeof(buf), &p, 1) == 0
        || aigov_limit_format_ratelimit(buf, sizeof(buf), &p, 1) == 0
        || aigov_limit_format_openai(buf, sizeof(buf), sp, r, h) == 0)
    {
        abort();
    }
}


static void
check_gcra(const aigov_limit_spec_t *sp, const uint8_t *costs, size_t n)
{
    size_t                i;
    uint32_t              k, cost;
    uint64_t              now, last_remaining;
    aigov_gcra_t          g, again;
    aigov_limit_result_t  r;

    memset(&g, 0, sizeof(g));
    now = 1000;
    last_remaining = UINT64_MAX;

    for (k = 0; k < 64 && k < sp->burst; k++) {
        if (aigov_gcra_take(&g, sp, now, 1, &r) != AIGOV_LIMIT_ALLOWED
            || r.remaining > last_remaining || r.remaining >= sp->burst)
        {
            abort();
        }

        last_remaining = r.remaining;
    }

    check_headers(sp, &r, n);

    if (k == sp->burst) {
        again = g;

        if (aigov_gcra_take(&g, sp, now, 1, &r) == AIGOV_LIMIT_REJECTED) {
            if (r.retry_after_ms == 0 || r.remaining != 0
                || memcmp(&g, &again, sizeof(g)) != 0)
            {
                abort();
            }

            check_headers(sp, &r, n + 1);

            if (aigov_gcra_take(&g, sp, now + r.retry_after_ms, 1, &r)
                != AIGOV_LIMIT_ALLOWED)
            {
                abort();
            }
        }
    }

    for (i = 0; i + 4 <= n; i += 4) {
        memcpy(&cost, costs + i, 4);

        switch (cost & 3) {
        case 0:
            aigov_gcra_take(&g, sp, now, cost >> 2, &r);

            if ((cost >> 2) > sp->burst
                ? r.status != AIGOV_LIMIT_NEVER
                : r.status == AIGOV_LIMIT_NEVER)
            {
                abort();
            }

            if (r.allowed != (r.status == AIGOV_LIMIT_ALLOWED)
                || (r.allowed && r.retry_after_ms != 0)
                || (r.status == AIGOV_LIMIT_REJECTED
                    && r.retry_after_ms == 0))
            {
                abort();
            }
            break;
        case 1:
            aigov_gcra_charge(&g, sp, now, (uint64_t) cost << 20);
            break;
        case 2:
            aigov_gcra_settle(&g, sp, now, cost >> 8, cost & 0xff);
            break;
        default:
            /* time moves, forwards or backwards */
            now = (cost & 4) ? now + (cost >> 3) : now - (cost >> 12);
            break;
        }

        if (g.tat > 2 * AIGOV_GCRA_TIME_MAX || g.last > AIGOV_GCRA_TIME_MAX) {
            abort();
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                 err[160], canon[64];
    size_t               rate_len, rest;
    uint32_t             burst;
    const char          *s, *nl;
    aigov_limit_spec_t   sp, before, back;

    s = (const char *) data;

    nl = memchr(s, '\n', size);
    rate_len = nl ? (size_t) (nl - s) : size;

    memset(&sp, 0x5a, sizeof(sp));
    before = sp;
    memset(err, 'X', sizeof(err));

    if (aigov_limit_parse_rate(s, rate_len, &sp, err, sizeof(err))
        != AIGOV_OK)
    {
        if (memcmp(&sp, &before, sizeof(sp)) != 0) {
            abort();
        }

        check_err(err, sizeof(err));
        return 0;
    }

    if (sp.rate == 0 || sp.burst != sp.rate
        || sp.period_ms < 1000 || sp.period_ms > AIGOV_LIMIT_PERIOD_MAX
        || sp.period_ms % 1000 != 0
        || (sp.unit != AIGOV_LIMIT_REQUESTS && sp.unit != AIGOV_LIMIT_TOKENS))
    {
        abort();
    }

    snprintf(canon, sizeof(canon), "%u%c/%us", (unsigned) sp.rate,
             sp.unit == AIGOV_LIMIT_TOKENS ? 't' : 'r',
             (unsigned) (sp.period_ms / 1000));

    if (aigov_limit_parse_rate(canon, strlen(canon), &back, NULL, 0)
        != AIGOV_OK
        || memcmp(&back, &sp, sizeof(sp)) != 0)
    {
        abort();
    }

    if (nl == NULL) {
        check_gcra(&sp, NULL, 0);
        return 0;
    }

    s = nl + 1;
    rest = size - rate_len - 1;

    nl = memchr(s, '\n', rest);

    burst = 0xdeadbeef;
    memset(err, 'X', sizeof(err));

    if (aigov_limit_parse_burst(s, nl ? (size_t) (nl - s) : rest, &burst,
                                err, sizeof(err))
        != AIGOV_OK)
    {
        if (burst != 0xdeadbeef) {
            abort();
        }

        check_err(err, sizeof(err));
        return 0;
    }

    if (burst == 0) {
        abort();
    }

    sp.burst = burst;

    if (nl == NULL) {
        check_gcra(&sp, NULL, 0);
        return 0;
    }

    check_gcra(&sp, (const uint8_t *) nl + 1,
               rest - (size_t) (nl + 1 - s));

    return 0;
}
