/*
 * ngx_aigov: circuit breaker state machine (see include/aigov_breaker.h).
 * No nginx headers here: tests/ links this file on its own.
 *
 * Every function copes with any configuration, checked or not, and any
 * bytes in aigov_breaker_t without reading or writing out of bounds: the
 * state lives in shared memory that survives reloads, and a bad directive
 * must not turn into a worker crash.  Sizes and durations are clamped to
 * the compile-time limits before use.
 */

#include <string.h>
#include <stdio.h>

#include "aigov_breaker.h"


static uint32_t aigov_breaker_window_type(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_window_size(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_bucket_ms(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_probes(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_min_calls(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_open_base(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_open_cap(const aigov_breaker_conf_t *c);
static uint64_t aigov_breaker_probe_timeout(const aigov_breaker_conf_t *c);
static uint32_t aigov_breaker_percent(uint32_t v);
static inline int aigov_breaker_shape_same(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c);
static int aigov_breaker_shape_ok(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c);
static uint64_t aigov_breaker_clock(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now);
static uint64_t aigov_breaker_clock_all(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now);
static void aigov_breaker_rebase(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now);
static void aigov_breaker_advance(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now);
static void aigov_breaker_expire_probes(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now);
static void aigov_breaker_reset_window(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c);
static void aigov_breaker_reset_probes(aigov_breaker_t *b);
static void aigov_breaker_add(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, unsigned fail, unsigned slow);
static uint32_t aigov_breaker_next_open(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c);
static void aigov_breaker_to_open(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now, int reason,
    uint32_t open_ms);
static void aigov_breaker_to_half_open(aigov_breaker_t *b, uint64_t now,
    int reason);
static void aigov_breaker_to_closed(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now, int reason);
static int aigov_breaker_rate_reached(uint32_t count, uint32_t calls,
    uint32_t threshold);
static uint32_t aigov_breaker_popcount(uint32_t v);
static void aigov_breaker_window_view(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now, uint32_t *calls,
    uint32_t *failures, uint32_t *slow);
static uint64_t aigov_breaker_now(const aigov_breaker_t *b, uint64_t now);
static uint64_t aigov_breaker_deadline(uint64_t now, uint64_t ms);
static void aigov_breaker_write_begin(aigov_breaker_t *b);
static void aigov_breaker_write_end(aigov_breaker_t *b);
static int aigov_breaker_do_allow(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms,
    aigov_breaker_permit_t *permit);
static int aigov_breaker_do_record(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms, int outcome,
    uint64_t duration_ms, const aigov_breaker_permit_t *permit);
static void aigov_breaker_do_force(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, int state, uint64_t now_ms,
    uint64_t open_ms);
static int aigov_breaker_do_remote_trip(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms, uint64_t open_ms);
static size_t aigov_breaker_quote(char *dst, size_t size, const char *s,
    size_t len);


/* --- configuration ---------------------------------------------------- */


void
aigov_breaker_conf_init(aigov_breaker_conf_t *c)
{
    memset(c, 0, sizeof(aigov_breaker_conf_t));

    c->window_type = AIGOV_BREAKER_WINDOW_COUNT;
    c->window_size = 100;
    c->bucket_ms = 1000;
    c->minimum_calls = 100;
    c->failure_rate_threshold = 50;
    c->slow_call_rate_threshold = 0;
    c->slow_call_duration_ms = 60000;
    c->consecutive_failures = 0;
    c->open_duration_ms = 60000;
    c->open_duration_max_ms = 0;
    c->open_backoff = 100;
    c->half_open_probes = 10;
    c->probe_timeout_ms = 300000;

    (void) aigov_breaker_parse_classifier(&c->classifier,
                                   AIGOV_BREAKER_DEFAULT_FAILURES,
                                   sizeof(AIGOV_BREAKER_DEFAULT_FAILURES) - 1,
                                   NULL, 0);
}


#define aigov_breaker_fail(...)                                              \
    do {                                                                     \
        if (errlen) {                                                        \
            snprintf(err, errlen, __VA_ARGS__);                              \
        }                                                                    \
        return AIGOV_BREAKER_ERROR;                                          \
    } while (0)


int
aigov_breaker_conf_check(const aigov_breaker_conf_t *c, char *err,
    size_t errlen)
{
    unsigned  i, any;
    uint32_t  max;

    if (err == NULL) {
        errlen = 0;
    }

    if (c->window_type == AIGOV_BREAKER_WINDOW_COUNT) {
        if (c->window_size < 1 || c->window_size > AIGOV_BREAKER_MAX_CALLS) {
            aigov_breaker_fail("window size %u is out of range 1..%u for a "
                               "count window", (unsigned) c->window_size,
                               (unsigned) AIGOV_BREAKER_MAX_CALLS);
        }

    } else if (c->window_type == AIGOV_BREAKER_WINDOW_TIME) {
        if (c->window_size < 1 || c->window_size > AIGOV_BREAKER_MAX_BUCKETS)
        {
            aigov_breaker_fail("window size %u is out of range 1..%u buckets "
                               "for a time window", (unsigned) c->window_size,
                               (unsigned) AIGOV_BREAKER_MAX_BUCKETS);
        }

        if (c->bucket_ms < AIGOV_BREAKER_MIN_BUCKET_MS
            || c->bucket_ms > AIGOV_BREAKER_MAX_BUCKET_MS)
        {
            aigov_breaker_fail("bucket width %u ms is out of range %u..%u ms",
                               (unsigned) c->bucket_ms,
                               (unsigned) AIGOV_BREAKER_MIN_BUCKET_MS,
                               (unsigned) AIGOV_BREAKER_MAX_BUCKET_MS);
        }

    } else {
        aigov_breaker_fail("unknown window type %u",
                           (unsigned) c->window_type);
    }

    if (c->minimum_calls < 1) {
        aigov_breaker_fail("minimum calls must be at least 1");
    }

    if (c->failure_rate_threshold < 1 || c->failure_rate_threshold > 100) {
        aigov_breaker_fail("failure rate threshold %u%% is out of range "
                           "1..100%%", (unsigned) c->failure_rate_threshold);
    }

    if (c->slow_call_rate_threshold > 100) {
        aigov_breaker_fail("slow call rate threshold %u%% is out of range "
                           "0..100%%",
                           (unsigned) c->slow_call_rate_threshold);
    }

    if (c->slow_call_rate_threshold && c->slow_call_duration_ms == 0) {
        aigov_breaker_fail("a slow call rate threshold needs a slow call "
                           "duration");
    }

    if (c->open_duration_ms < 1
        || c->open_duration_ms > AIGOV_BREAKER_MAX_DURATION_MS)
    {
        aigov_breaker_fail("open duration %u ms is out of range 1..%u ms",
                           (unsigned) c->open_duration_ms,
                           (unsigned) AIGOV_BREAKER_MAX_DURATION_MS);
    }

    if (c->open_duration_max_ms > AIGOV_BREAKER_MAX_DURATION_MS) {
        aigov_breaker_fail("maximum open duration %u ms is out of range "
                           "1..%u ms", (unsigned) c->open_duration_max_ms,
                           (unsigned) AIGOV_BREAKER_MAX_DURATION_MS);
    }

    if (c->open_duration_max_ms
        && c->open_duration_max_ms < c->open_duration_ms)
    {
        aigov_breaker_fail("maximum open duration %u ms is below the open "
                           "duration %u ms",
                           (unsigned) c->open_duration_max_ms,
                           (unsigned) c->open_duration_ms);
    }

    if (c->open_backoff < 100 || c->open_backoff > AIGOV_BREAKER_MAX_BACKOFF)
    {
        aigov_breaker_fail("open backoff %u.%02u is out of range "
                           "1.00..%u.00", (unsigned) c->open_backoff / 100,
                           (unsigned) c->open_backoff % 100,
                           (unsigned) AIGOV_BREAKER_MAX_BACKOFF / 100);
    }

    max = aigov_breaker_open_cap(c);

    if (c->open_backoff > 100 && max <= c->open_duration_ms) {
        /* a multiplier with nowhere to grow is a forgotten maximum */
        aigov_breaker_fail("open backoff %u.%02u needs a maximum open "
                           "duration above the open duration %u ms",
                           (unsigned) c->open_backoff / 100,
                           (unsigned) c->open_backoff % 100,
                           (unsigned) c->open_duration_ms);
    }

    if (c->half_open_probes < 1
        || c->half_open_probes > AIGOV_BREAKER_MAX_PROBES)
    {
        aigov_breaker_fail("half-open probes %u is out of range 1..%u",
                           (unsigned) c->half_open_probes,
                           (unsigned) AIGOV_BREAKER_MAX_PROBES);
    }

    if (c->probe_timeout_ms < 1
        || c->probe_timeout_ms > AIGOV_BREAKER_MAX_DURATION_MS)
    {
        aigov_breaker_fail("probe timeout %u ms is out of range 1..%u ms",
                           (unsigned) c->probe_timeout_ms,
                           (unsigned) AIGOV_BREAKER_MAX_DURATION_MS);
    }

    any = 0;

    for (i = 0; i < AIGOV_BREAKER_STATUS_WORDS; i++) {
        if (c->classifier.fail_status[i] & c->classifier.ignore_status[i]) {
            aigov_breaker_fail("a status is both a failure and ignored");
        }

        any |= c->classifier.fail_status[i] | c->classifier.ignore_status[i];
    }

    if (c->classifier.fail_errors & c->classifier.ignore_errors) {
        aigov_breaker_fail("an upstream error is both a failure and ignored");
    }

    any |= c->classifier.fail_errors | c->classifier.ignore_errors;

    if (!any) {
        aigov_breaker_fail("no failure conditions");
    }

    return AIGOV_BREAKER_OK;
}


uint32_t
aigov_breaker_open_max(const aigov_breaker_conf_t *c)
{
    return aigov_breaker_open_cap(c);
}


/*
 * aigov_breaker_open_max() for this file: a static function can be
 * inlined, a call to an exported one goes through the PLT in a module.
 */
static uint32_t
aigov_breaker_open_cap(const aigov_breaker_conf_t *c)
{
    uint32_t  base, max;

    base = aigov_breaker_open_base(c);
    max = c->open_duration_max_ms;

    if (max > AIGOV_BREAKER_MAX_DURATION_MS) {
        max = AIGOV_BREAKER_MAX_DURATION_MS;
    }

    return (max > base) ? max : base;
}


static uint32_t
aigov_breaker_window_type(const aigov_breaker_conf_t *c)
{
    return (c->window_type == AIGOV_BREAKER_WINDOW_TIME)
           ? AIGOV_BREAKER_WINDOW_TIME : AIGOV_BREAKER_WINDOW_COUNT;
}


static uint32_t
aigov_breaker_window_size(const aigov_breaker_conf_t *c)
{
    uint32_t  max;

    max = (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_TIME)
          ? AIGOV_BREAKER_MAX_BUCKETS : AIGOV_BREAKER_MAX_CALLS;

    if (c->window_size < 1) {
        return 1;
    }

    return (c->window_size > max) ? max : c->window_size;
}


static uint32_t
aigov_breaker_bucket_ms(const aigov_breaker_conf_t *c)
{
    if (c->bucket_ms < AIGOV_BREAKER_MIN_BUCKET_MS) {
        return AIGOV_BREAKER_MIN_BUCKET_MS;
    }

    if (c->bucket_ms > AIGOV_BREAKER_MAX_BUCKET_MS) {
        return AIGOV_BREAKER_MAX_BUCKET_MS;
    }

    return c->bucket_ms;
}


static uint32_t
aigov_breaker_probes(const aigov_breaker_conf_t *c)
{
    if (c->half_open_probes < 1) {
        return 1;
    }

    return (c->half_open_probes > AIGOV_BREAKER_MAX_PROBES)
           ? AIGOV_BREAKER_MAX_PROBES : c->half_open_probes;
}


static uint32_t
aigov_breaker_min_calls(const aigov_breaker_conf_t *c)
{
    uint32_t  n;

    n = (c->minimum_calls < 1) ? 1 : c->minimum_calls;

    /* R4j: a count window can never hold more than its size */
    if (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_COUNT
        && n > aigov_breaker_window_size(c))
    {
        n = aigov_breaker_window_size(c);
    }

    return n;
}


static uint32_t
aigov_breaker_open_base(const aigov_breaker_conf_t *c)
{
    if (c->open_duration_ms < 1) {
        return 1;
    }

    return (c->open_duration_ms > AIGOV_BREAKER_MAX_DURATION_MS)
           ? AIGOV_BREAKER_MAX_DURATION_MS : c->open_duration_ms;
}


static uint64_t
aigov_breaker_probe_timeout(const aigov_breaker_conf_t *c)
{
    if (c->probe_timeout_ms < 1) {
        return 1;
    }

    return (c->probe_timeout_ms > AIGOV_BREAKER_MAX_DURATION_MS)
           ? AIGOV_BREAKER_MAX_DURATION_MS : c->probe_timeout_ms;
}


/* Thresholds above 100 % behave as 100 %; 0 stays "off". */
static uint32_t
aigov_breaker_percent(uint32_t v)
{
    return (v > 100) ? 100 : v;
}


/* --- classifier ------------------------------------------------------- */


#define AIGOV_BREAKER_TOKEN_SHOWN  32


typedef struct {
    const char  *name;
    size_t       len;
    uint32_t     mask;
} aigov_breaker_error_name_t;


static const aigov_breaker_error_name_t  aigov_breaker_error_names[] = {
    { "connect_error", sizeof("connect_error") - 1,
      AIGOV_BREAKER_ERR_CONNECT },
    { "timeout", sizeof("timeout") - 1, AIGOV_BREAKER_ERR_TIMEOUT },
    { "reset", sizeof("reset") - 1, AIGOV_BREAKER_ERR_RESET },
    { "invalid_header", sizeof("invalid_header") - 1,
      AIGOV_BREAKER_ERR_INVALID_HEADER },
    { "cut", sizeof("cut") - 1, AIGOV_BREAKER_ERR_CUT },
    { "error", sizeof("error") - 1,
      AIGOV_BREAKER_ERR_CONNECT | AIGOV_BREAKER_ERR_RESET },
    { NULL, 0, 0 }
};


/*
 * A token for an error message: quoted, non-printable bytes as \xHH, at
 * most AIGOV_BREAKER_TOKEN_SHOWN bytes of it and then "...", so that
 * whatever a configuration holds the log line stays one readable line.
 */
static size_t
aigov_breaker_quote(char *dst, size_t size, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             i, n;
    unsigned char      ch;

    n = 0;

    /* size is always >= 4 * AIGOV_BREAKER_TOKEN_SHOWN + 8 here */
    (void) size;

    dst[n++] = '"';

    for (i = 0; i < len && i < AIGOV_BREAKER_TOKEN_SHOWN; i++) {
        ch = (unsigned char) s[i];

        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            dst[n++] = '\\';
            dst[n++] = 'x';
            dst[n++] = hex[ch >> 4];
            dst[n++] = hex[ch & 0xf];

        } else {
            dst[n++] = (char) ch;
        }
    }

    if (len > AIGOV_BREAKER_TOKEN_SHOWN) {
        dst[n++] = '.';
        dst[n++] = '.';
        dst[n++] = '.';
    }

    dst[n++] = '"';
    dst[n] = '\0';

    return n;
}


static int
aigov_breaker_is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}


static size_t
aigov_breaker_token_len(const char *s, size_t len, size_t off)
{
    size_t  n;

    for (n = 0; off + n < len && !aigov_breaker_is_space(s[off + n]); n++) {
        /* void */
    }

    return n;
}


/*
 * Where each condition was first given, to name the earlier token in
 * "duplicate" and "conflicts with" messages: offsets into the input, plus
 * one (0: not given).
 */
typedef struct {
    uint32_t  klass[2][6];                     /* [ignore][1..5] */
    uint32_t  status[2][500];                  /* [ignore][status - 100] */
    uint32_t  error[2][AIGOV_BREAKER_ERR_KINDS];   /* [ignore][bit] */
} aigov_breaker_seen_t;


int
aigov_breaker_parse_classifier(aigov_breaker_classifier_t *cl,
    const char *s, size_t len, char *err, size_t errlen)
{
    char                               tok[4 * AIGOV_BREAKER_TOKEN_SHOWN + 8];
    char                               other[4 * AIGOV_BREAKER_TOKEN_SHOWN
                                             + 8];
    size_t                             off, tlen, plen, i;
    uint32_t                          *same, *opp, prev, mask, bit, status;
    unsigned                           d, neg, n, k;
    const char                        *t, *p;
    aigov_breaker_seen_t               seen;
    const aigov_breaker_error_name_t  *e;

    memset(cl, 0, sizeof(aigov_breaker_classifier_t));
    memset(&seen, 0, sizeof(aigov_breaker_seen_t));

    if (err && errlen) {
        err[0] = '\0';
    }

    if (err == NULL) {
        errlen = 0;
    }

    n = 0;
    off = 0;

    while (off < len) {

        if (aigov_breaker_is_space(s[off])) {
            off++;
            continue;
        }

        t = s + off;
        tlen = aigov_breaker_token_len(s, len, off);

        neg = (t[0] == '!');
        p = t + neg;
        plen = tlen - neg;

        aigov_breaker_quote(tok, sizeof(tok), t, tlen);

        same = NULL;
        opp = NULL;
        mask = 0;

        if (plen == 0) {
            memset(cl, 0, sizeof(aigov_breaker_classifier_t));
            aigov_breaker_fail("missing condition after \"!\"");
        }

        if (plen == 3 && p[0] >= '0' && p[0] <= '9'
            && (p[1] == 'x' || p[1] == 'X') && (p[2] == 'x' || p[2] == 'X'))
        {
            d = (unsigned) (p[0] - '0');

            if (d < 1 || d > 5) {
                memset(cl, 0, sizeof(aigov_breaker_classifier_t));
                aigov_breaker_fail("status class %s is out of range "
                                   "1xx..5xx", tok);
            }

            same = &seen.klass[neg][d];
            opp = &seen.klass[!neg][d];

        } else if (p[0] >= '0' && p[0] <= '9') {

            status = 0;

            for (i = 0; i < plen; i++) {
                if (p[i] < '0' || p[i] > '9') {
                    break;
                }

                if (status < 1000) {
                    status = status * 10 + (uint32_t) (p[i] - '0');
                }
            }

            if (i < plen) {
                memset(cl, 0, sizeof(aigov_breaker_classifier_t));
                aigov_breaker_fail("unknown failure condition %s", tok);
            }

            if (plen != 3 || status < 100 || status > 599) {
                memset(cl, 0, sizeof(aigov_breaker_classifier_t));
                aigov_breaker_fail("status %s is out of range 100..599",
                                   tok);
            }

            same = &seen.status[neg][status - 100];
            opp = &seen.status[!neg][status - 100];

        } else {
            for (e = aigov_breaker_error_names; e->name; e++) {
                if (e->len == plen && memcmp(e->name, p, plen) == 0) {
                    mask = e->mask;
                    break;
                }
            }

            if (mask == 0) {
                memset(cl, 0, sizeof(aigov_breaker_classifier_t));
                aigov_breaker_fail("unknown failure condition %s", tok);
            }
        }

        if (mask) {
            /* "error" covers two bits: the first one given names it */
            for (k = 0; k < AIGOV_BREAKER_ERR_KINDS; k++) {
                bit = 1u << k;

                if (!(mask & bit)) {
                    continue;
                }

                if (seen.error[neg][k]) {
                    same = &seen.error[neg][k];
                    break;
                }

                if (seen.error[!neg][k]) {
                    opp = &seen.error[!neg][k];
                    break;
                }
            }

            prev = same ? *same : (opp ? *opp : 0);

        } else {
            prev = *same ? *same : *opp;
        }

        if (prev) {
            aigov_breaker_quote(other, sizeof(other), s + prev - 1,
                                aigov_breaker_token_len(s, len, prev - 1));

            memset(cl, 0, sizeof(aigov_breaker_classifier_t));

            if (mask ? same != NULL : *same != 0) {
                if (strcmp(tok, other) == 0) {
                    aigov_breaker_fail("duplicate %s", tok);
                }

                aigov_breaker_fail("%s repeats %s", tok, other);
            }

            aigov_breaker_fail("%s conflicts with %s", tok, other);
        }

        if (mask) {
            for (k = 0; k < AIGOV_BREAKER_ERR_KINDS; k++) {
                if (mask & (1u << k)) {
                    seen.error[neg][k] = (uint32_t) off + 1;
                }
            }

        } else {
            *same = (uint32_t) off + 1;
        }

        n++;
        off += tlen;
    }

    if (n == 0) {
        aigov_breaker_fail("no failure conditions");
    }

    /* a single status overrides its class, whichever way */

    for (status = 100; status < 600; status++) {
        d = status / 100;
        bit = status - 100;

        if (seen.status[0][bit]
            || (seen.klass[0][d] && !seen.status[1][bit]))
        {
            cl->fail_status[bit / 32] |= 1u << (bit % 32);

        } else if (seen.status[1][bit] || seen.klass[1][d]) {
            cl->ignore_status[bit / 32] |= 1u << (bit % 32);
        }
    }

    for (k = 0; k < AIGOV_BREAKER_ERR_KINDS; k++) {
        if (seen.error[0][k]) {
            cl->fail_errors |= 1u << k;
        }

        if (seen.error[1][k]) {
            cl->ignore_errors |= 1u << k;
        }
    }

    return AIGOV_BREAKER_OK;
}


static unsigned
aigov_breaker_status_bit(const uint32_t *map, unsigned status)
{
    unsigned  bit;

    bit = status - 100;

    return (map[bit / 32] >> (bit % 32)) & 1;
}


/* snprintf-like appending: counts what would have been written */
static void
aigov_breaker_put(char *buf, size_t size, size_t *n, const char *s)
{
    size_t  len;

    len = strlen(s);

    if (*n > 0) {
        if (*n < size) {
            buf[*n] = ' ';
        }

        (*n)++;
    }

    if (*n < size) {
        memcpy(buf + *n, s, (*n + len < size) ? len : size - *n);
    }

    *n += len;
}


size_t
aigov_breaker_format_classifier(const aigov_breaker_classifier_t *cl,
    char *buf, size_t size)
{
    char                               word[24];
    size_t                             n;
    unsigned                           d, status, f, ig, klass_fail;
    const aigov_breaker_error_name_t  *e;

    n = 0;

    for (d = 1; d <= 5; d++) {
        f = 0;
        ig = 0;

        for (status = d * 100; status < d * 100 + 100; status++) {
            f += aigov_breaker_status_bit(cl->fail_status, status);
            ig += aigov_breaker_status_bit(cl->ignore_status, status);
        }

        if (f + ig == 100) {
            /* the class, and its exceptions the other way */
            klass_fail = (f >= ig);
            snprintf(word, sizeof(word), "%s%uxx", klass_fail ? "" : "!", d);
            aigov_breaker_put(buf, size, &n, word);

            for (status = d * 100; status < d * 100 + 100; status++) {
                if (klass_fail
                    && aigov_breaker_status_bit(cl->ignore_status, status))
                {
                    snprintf(word, sizeof(word), "!%u", status);
                    aigov_breaker_put(buf, size, &n, word);

                } else if (!klass_fail
                           && aigov_breaker_status_bit(cl->fail_status,
                                                       status))
                {
                    snprintf(word, sizeof(word), "%u", status);
                    aigov_breaker_put(buf, size, &n, word);
                }
            }

            continue;
        }

        for (status = d * 100; status < d * 100 + 100; status++) {
            if (aigov_breaker_status_bit(cl->fail_status, status)) {
                snprintf(word, sizeof(word), "%u", status);
                aigov_breaker_put(buf, size, &n, word);

            } else if (aigov_breaker_status_bit(cl->ignore_status, status)) {
                snprintf(word, sizeof(word), "!%u", status);
                aigov_breaker_put(buf, size, &n, word);
            }
        }
    }

    /* the single-bit names only; "error" is an input shorthand */
    for (e = aigov_breaker_error_names; e->name; e++) {
        if (aigov_breaker_popcount(e->mask) != 1) {
            continue;
        }

        if (cl->fail_errors & e->mask) {
            aigov_breaker_put(buf, size, &n, e->name);

        } else if (cl->ignore_errors & e->mask) {
            snprintf(word, sizeof(word), "!%s", e->name);
            aigov_breaker_put(buf, size, &n, word);
        }
    }

    if (size) {
        buf[(n < size) ? n : size - 1] = '\0';
    }

    return n;
}


AIGOV_HOT
int
aigov_breaker_classify(const aigov_breaker_conf_t *c, int status,
    unsigned upstream_error)
{
    const aigov_breaker_classifier_t  *cl;

    cl = &c->classifier;

    if (upstream_error & cl->fail_errors) {
        return AIGOV_BREAKER_FAILURE;
    }

    if (upstream_error & cl->ignore_errors) {
        return AIGOV_BREAKER_IGNORE;
    }

    if (status < 100 || status > 599) {
        /* no response: it says nothing about the backend */
        return AIGOV_BREAKER_IGNORE;
    }

    if (aigov_breaker_status_bit(cl->ignore_status, (unsigned) status)) {
        return AIGOV_BREAKER_IGNORE;
    }

    if (aigov_breaker_status_bit(cl->fail_status, (unsigned) status)) {
        return AIGOV_BREAKER_FAILURE;
    }

    return AIGOV_BREAKER_SUCCESS;
}


/* --- state machine ---------------------------------------------------- */


void
aigov_breaker_init(aigov_breaker_t *b)
{
    memset(b, 0, sizeof(aigov_breaker_t));
}


static uint32_t
aigov_breaker_popcount(uint32_t v)
{
    uint32_t  n;

    for (n = 0; v; v &= v - 1) {
        n++;
    }

    return n;
}


/*
 * The usual case of aigov_breaker_shape_ok(), cheaply, for every call: the
 * configuration as written is the shape b is laid out for, and it is in
 * range, so its clamped values are the same.  0 says "ask shape_ok()".
 */
static inline int
aigov_breaker_shape_same(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c)
{
    if (b->shape_type != c->window_type
        || b->shape_size != c->window_size
        || b->shape_probes != c->half_open_probes
        || c->half_open_probes - 1 >= AIGOV_BREAKER_MAX_PROBES)
    {
        return 0;
    }

    if (c->window_type == AIGOV_BREAKER_WINDOW_COUNT) {
        return c->window_size - 1 < AIGOV_BREAKER_MAX_CALLS;
    }

    return c->window_type == AIGOV_BREAKER_WINDOW_TIME
           && c->window_size - 1 < AIGOV_BREAKER_MAX_BUCKETS
           && b->shape_bucket_ms == c->bucket_ms
           && c->bucket_ms >= AIGOV_BREAKER_MIN_BUCKET_MS
           && c->bucket_ms <= AIGOV_BREAKER_MAX_BUCKET_MS;
}


static int
aigov_breaker_shape_ok(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c)
{
    uint32_t  type;

    if (aigov_breaker_shape_same(b, c)) {
        return 1;
    }

    type = aigov_breaker_window_type(c);

    return b->shape_type == type
           && b->shape_size == aigov_breaker_window_size(c)
           && b->shape_probes == aigov_breaker_probes(c)
           && (type == AIGOV_BREAKER_WINDOW_COUNT
               || b->shape_bucket_ms == aigov_breaker_bucket_ms(c));
}


static void
aigov_breaker_reset_window(aigov_breaker_t *b, const aigov_breaker_conf_t *c)
{
    b->calls = 0;
    b->failures = 0;
    b->slow = 0;

    memset(&b->w, 0, sizeof(b->w));

    if (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_TIME) {
        b->w.time.epoch = b->last_ms / aigov_breaker_bucket_ms(c);
    }
}


static void
aigov_breaker_reset_probes(aigov_breaker_t *b)
{
    b->probe_busy = 0;
    b->probe_done = 0;
    b->probe_failures = 0;
    b->probe_slow = 0;

    memset(b->probe_id, 0, sizeof(b->probe_id));
    memset(b->probe_ms, 0, sizeof(b->probe_ms));
}


/*
 * Brings b in line with c and with the time now: adopts a new window shape
 * or probe count, clamps times that run backwards, ages the TIME window
 * and frees lost probe slots.  Returns the time to use.
 *
 * Every allow() and record() starts here, so the usual case goes the
 * short way: a CLOSED breaker laid out for c, with no open duration left
 * and the time within the slack or ahead, needs only last_ms and the TIME
 * window brought forward; aigov_breaker_clock_all() would do the same.
 */
AIGOV_HOT
static uint64_t
aigov_breaker_clock(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now)
{
    uint64_t  t;

    t = (now < b->last_ms) ? b->last_ms : now;

    if (b->state == AIGOV_BREAKER_CLOSED
        && b->open_ms == 0
        && t - now <= AIGOV_BREAKER_CLOCK_SLACK_MS
        && b->changed_ms <= t
        && aigov_breaker_shape_same(b, c))
    {
        b->last_ms = t;
        aigov_breaker_advance(b, c, t);

        return t;
    }

    return aigov_breaker_clock_all(b, c, now);
}


/* aigov_breaker_clock() the whole way: force() and the like start here. */
static uint64_t
aigov_breaker_clock_all(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now)
{
    uint64_t  max;

    if (!aigov_breaker_shape_ok(b, c)) {
        if (b->shape_probes != aigov_breaker_probes(c)
            || b->state != AIGOV_BREAKER_HALF_OPEN)
        {
            aigov_breaker_reset_probes(b);
        }

        b->shape_type = (uint8_t) aigov_breaker_window_type(c);
        b->shape_size = aigov_breaker_window_size(c);
        b->shape_probes = (uint8_t) aigov_breaker_probes(c);
        b->shape_bucket_ms = aigov_breaker_bucket_ms(c);

        aigov_breaker_reset_window(b, c);
    }

    if (b->state > AIGOV_BREAKER_HALF_OPEN) {
        /* not a state this code writes: start again rather than guess */
        aigov_breaker_to_closed(b, c, b->last_ms, AIGOV_BREAKER_REASON_NONE);
    }

    if (now < b->last_ms) {
        if (b->last_ms - now <= AIGOV_BREAKER_CLOCK_SLACK_MS) {
            /* workers' cached clocks differ a little: time stands still */
            now = b->last_ms;

        } else {
            aigov_breaker_rebase(b, c, now);
        }
    }

    b->last_ms = now;

    aigov_breaker_advance(b, c, now);

    if (b->open_ms || b->state == AIGOV_BREAKER_OPEN) {
        /* CLOSED has neither: no maximum to work out per call */

        max = aigov_breaker_open_cap(c);

        if (b->open_ms > max) {
            b->open_ms = (uint32_t) max;
        }

        if (b->state == AIGOV_BREAKER_OPEN && b->open_until_ms > now
            && b->open_until_ms - now > max)
        {
            /* the maximum shrank in a reload */
            b->open_until_ms = now + max;
        }
    }

    if (b->changed_ms > now) {
        b->changed_ms = now;
    }

    if (b->state == AIGOV_BREAKER_HALF_OPEN) {
        aigov_breaker_expire_probes(b, c, now);
    }

    return now;
}


/*
 * The clock stepped back by more than the slack: move every stored time
 * back by the same step, so that what remains of an open period or a probe
 * timeout is kept, instead of waiting for the clock to catch up again.
 */
static void
aigov_breaker_rebase(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now)
{
    uint64_t  step;
    unsigned  i;

    step = b->last_ms - now;

    b->changed_ms = (b->changed_ms > step) ? b->changed_ms - step : 0;
    b->open_until_ms = (b->open_until_ms > step)
                       ? b->open_until_ms - step : 0;

    for (i = 0; i < AIGOV_BREAKER_MAX_PROBES; i++) {
        b->probe_ms[i] = (b->probe_ms[i] > step) ? b->probe_ms[i] - step : 0;
    }

    b->last_ms = now;
    b->clock_jumps++;

    if (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_TIME) {
        /* buckets are addressed by absolute time: they no longer line up */
        aigov_breaker_reset_window(b, c);
    }
}


static void
aigov_breaker_advance(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now)
{
    uint64_t                 cur, e;
    uint32_t                 size;
    aigov_breaker_bucket_t  *bk;

    if (aigov_breaker_window_type(c) != AIGOV_BREAKER_WINDOW_TIME) {
        return;
    }

    cur = now / aigov_breaker_bucket_ms(c);

    if (cur <= b->w.time.epoch) {
        return;
    }

    size = aigov_breaker_window_size(c);

    if (cur - b->w.time.epoch >= size) {
        b->calls = 0;
        b->failures = 0;
        b->slow = 0;
        memset(b->w.time.bucket, 0, sizeof(b->w.time.bucket));

    } else {
        for (e = b->w.time.epoch + 1; e <= cur; e++) {
            bk = &b->w.time.bucket[e % size];

            b->calls -= bk->calls;
            b->failures -= bk->failures;
            b->slow -= bk->slow;

            bk->calls = 0;
            bk->failures = 0;
            bk->slow = 0;
        }
    }

    b->w.time.epoch = cur;
}


static void
aigov_breaker_expire_probes(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now)
{
    uint64_t  timeout;
    unsigned  i;

    timeout = aigov_breaker_probe_timeout(c);

    for (i = 0; i < AIGOV_BREAKER_MAX_PROBES; i++) {
        if ((b->probe_busy & (1u << i)) && now - b->probe_ms[i] >= timeout) {
            b->probe_busy &= ~(1u << i);
            b->probes_lost++;
        }
    }
}


static void
aigov_breaker_add(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    unsigned fail, unsigned slow)
{
    uint32_t                 size, head, word, bit;
    aigov_breaker_bucket_t  *bk;

    size = aigov_breaker_window_size(c);

    if (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_TIME) {

        if (b->calls == UINT32_MAX) {
            /* four billion calls in one window: the rate is known */
            return;
        }

        bk = &b->w.time.bucket[b->w.time.epoch % size];

        bk->calls++;
        bk->failures += fail;
        bk->slow += slow;

        b->calls++;
        b->failures += fail;
        b->slow += slow;

        return;
    }

    head = b->w.ring.head;

    if (head >= size) {
        /* cannot happen once adopted; keep memory safe regardless */
        aigov_breaker_reset_window(b, c);
        head = 0;
    }

    word = head / 32;
    bit = 1u << (head % 32);

    if (b->calls == size) {
        /* the ring is full: the oldest call leaves */
        b->failures -= (b->w.ring.fail[word] & bit) ? 1 : 0;
        b->slow -= (b->w.ring.slow[word] & bit) ? 1 : 0;

    } else {
        b->calls++;
    }

    b->w.ring.fail[word] = (b->w.ring.fail[word] & ~bit) | (fail ? bit : 0);
    b->w.ring.slow[word] = (b->w.ring.slow[word] & ~bit) | (slow ? bit : 0);

    b->failures += fail;
    b->slow += slow;

    b->w.ring.head = (head + 1 == size) ? 0 : head + 1;
}


/*
 * count * 100 >= threshold * calls: at exactly the threshold it trips, as
 * R4j's ">=".  A threshold of 0 is off.
 */
static int
aigov_breaker_rate_reached(uint32_t count, uint32_t calls, uint32_t threshold)
{
    threshold = aigov_breaker_percent(threshold);

    if (threshold == 0 || calls == 0) {
        return 0;
    }

    return (uint64_t) count * 100 >= (uint64_t) threshold * calls;
}


/* The open duration after a failed half-open: grown by the backoff. */
static uint32_t
aigov_breaker_next_open(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c)
{
    uint64_t  cur, next, backoff, base, max;

    base = aigov_breaker_open_base(c);
    max = aigov_breaker_open_cap(c);
    cur = b->open_ms ? b->open_ms : base;

    backoff = c->open_backoff;

    if (backoff > AIGOV_BREAKER_MAX_BACKOFF) {
        backoff = AIGOV_BREAKER_MAX_BACKOFF;
    }

    next = cur;

    if (backoff > 100) {
        next = cur * backoff / 100;

        if (next <= cur) {
            /* 1 ms times 1.5 must still grow */
            next = cur + 1;
        }
    }

    if (next < base) {
        next = base;
    }

    return (uint32_t) ((next > max) ? max : next);
}


/* now + ms, saturating: a clock near its end must not wrap to the past */
static uint64_t
aigov_breaker_deadline(uint64_t now, uint64_t ms)
{
    return (now > UINT64_MAX - ms) ? UINT64_MAX : now + ms;
}


static void
aigov_breaker_to_open(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now, int reason, uint32_t open_ms)
{
    uint32_t  max;

    max = aigov_breaker_open_cap(c);

    if (open_ms < 1) {
        open_ms = 1;
    }

    if (open_ms > max) {
        open_ms = max;
    }

    b->state = AIGOV_BREAKER_OPEN;
    b->reason = (uint8_t) reason;
    b->changed_ms = now;
    b->open_ms = open_ms;
    b->open_until_ms = aigov_breaker_deadline(now, open_ms);
    b->generation++;
    b->trips++;
    b->consecutive = 0;

    aigov_breaker_reset_probes(b);
}


static void
aigov_breaker_to_half_open(aigov_breaker_t *b, uint64_t now, int reason)
{
    b->state = AIGOV_BREAKER_HALF_OPEN;
    b->reason = (uint8_t) reason;
    b->changed_ms = now;
    b->open_until_ms = 0;
    b->generation++;

    aigov_breaker_reset_probes(b);
}


static void
aigov_breaker_to_closed(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now, int reason)
{
    b->state = AIGOV_BREAKER_CLOSED;
    b->reason = (uint8_t) reason;
    b->changed_ms = now;
    b->open_until_ms = 0;
    b->open_ms = 0;                 /* backoff starts again */
    b->consecutive = 0;
    b->generation++;

    aigov_breaker_reset_probes(b);
    aigov_breaker_reset_window(b, c);
}


/*
 * Every call that changes b runs between these two: seq is odd meanwhile,
 * and moves on, so that aigov_breaker_allow_closed(), which reads b
 * without the mutex, can tell a state read half before and half after a
 * change (a sequence lock; writers are kept apart by the glue's mutex).
 * A seq left odd (a worker killed in between) is made even by the next.
 */
static void
aigov_breaker_write_begin(aigov_breaker_t *b)
{
    __atomic_store_n(&b->seq, b->seq | 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
}


static void
aigov_breaker_write_end(aigov_breaker_t *b)
{
    __atomic_store_n(&b->seq, (b->seq | 1) + 1, __ATOMIC_RELEASE);
}


AIGOV_HOT
int
aigov_breaker_allow(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, aigov_breaker_permit_t *permit)
{
    int  rc;

    aigov_breaker_write_begin(b);
    rc = aigov_breaker_do_allow(b, c, now_ms, permit);
    aigov_breaker_write_end(b);

    return rc;
}


AIGOV_HOT
int
aigov_breaker_allow_closed(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, aigov_breaker_permit_t *permit)
{
    uint32_t  seq;
    uint64_t  last, gen;

    seq = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);

    if (seq & 1) {
        return AIGOV_BREAKER_AGAIN;
    }

    last = __atomic_load_n(&b->last_ms, __ATOMIC_RELAXED);
    gen = __atomic_load_n(&b->generation, __ATOMIC_RELAXED);

    /*
     * Where allow() would only count the call: aigov_breaker_clock() the
     * short way with the time standing still (now_ms not past last_ms)
     * and the time window already at last_ms (as it always is).
     */

    if (__atomic_load_n(&b->state, __ATOMIC_RELAXED) != AIGOV_BREAKER_CLOSED
        || __atomic_load_n(&b->open_ms, __ATOMIC_RELAXED) != 0
        || now_ms > last
        || last - now_ms > AIGOV_BREAKER_CLOCK_SLACK_MS
        || __atomic_load_n(&b->changed_ms, __ATOMIC_RELAXED) > last
        || !aigov_breaker_shape_same(b, c)
        || (c->window_type == AIGOV_BREAKER_WINDOW_TIME
            && last / c->bucket_ms
               > __atomic_load_n(&b->w.time.epoch, __ATOMIC_RELAXED)))
    {
        return AIGOV_BREAKER_AGAIN;
    }

    /* no change began or ended while the above was read */

    __atomic_thread_fence(__ATOMIC_ACQUIRE);

    if (__atomic_load_n(&b->seq, __ATOMIC_RELAXED) != seq) {
        return AIGOV_BREAKER_AGAIN;
    }

    /* allowed as of those reads: a change since makes the permit stale */

    (void) __atomic_fetch_add(&b->allowed, 1, __ATOMIC_RELAXED);

    memset(permit, 0, sizeof(aigov_breaker_permit_t));

    permit->generation = gen;
    permit->kind = AIGOV_BREAKER_PERMIT_CALL;

    return AIGOV_BREAKER_ALLOW;
}


static int
aigov_breaker_do_allow(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, aigov_breaker_permit_t *permit)
{
    uint64_t  now, timeout, left, retry;
    uint32_t  probes, busy, slot;
    unsigned  i;

    now = aigov_breaker_clock(b, c, now_ms);

    memset(permit, 0, sizeof(aigov_breaker_permit_t));

    if (b->state == AIGOV_BREAKER_CLOSED) {
        (void) __atomic_fetch_add(&b->allowed, 1, __ATOMIC_RELAXED);
        permit->generation = b->generation;
        permit->kind = AIGOV_BREAKER_PERMIT_CALL;
        return AIGOV_BREAKER_ALLOW;
    }

    if (b->state == AIGOV_BREAKER_OPEN) {
        if (now < b->open_until_ms) {
            b->rejected++;
            permit->generation = b->generation;
            permit->retry_after_ms = b->open_until_ms - now;
            return AIGOV_BREAKER_REJECT;
        }

        aigov_breaker_to_half_open(b, now, AIGOV_BREAKER_REASON_OPEN_EXPIRED);
    }

    /* HALF_OPEN */

    probes = aigov_breaker_probes(c);
    busy = aigov_breaker_popcount(b->probe_busy);

    permit->generation = b->generation;

    if (busy + b->probe_done < probes) {
        for (slot = 0; slot < probes; slot++) {
            if (!(b->probe_busy & (1u << slot))) {
                break;
            }
        }

        if (++b->probe_seq == 0) {
            /* 0 marks a free slot's id: skip it on wrap-around */
            b->probe_seq = 1;
        }

        b->probe_busy |= 1u << slot;
        b->probe_id[slot] = b->probe_seq;
        b->probe_ms[slot] = now;
        (void) __atomic_fetch_add(&b->allowed, 1, __ATOMIC_RELAXED);

        permit->kind = AIGOV_BREAKER_PERMIT_PROBE;
        permit->slot = (uint16_t) slot;
        permit->probe_id = b->probe_seq;

        return AIGOV_BREAKER_ALLOW_PROBE;
    }

    /*
     * All slots are out: a slot frees, at the latest, when the oldest
     * probe times out.  Capped at the base open duration: it is a hint.
     */

    timeout = aigov_breaker_probe_timeout(c);
    retry = aigov_breaker_open_base(c);

    for (i = 0; i < AIGOV_BREAKER_MAX_PROBES; i++) {
        if (b->probe_busy & (1u << i)) {
            left = b->probe_ms[i] + timeout - now;

            if (left < retry) {
                retry = left;
            }
        }
    }

    b->rejected++;
    permit->retry_after_ms = retry ? retry : 1;

    return AIGOV_BREAKER_REJECT;
}


AIGOV_HOT
int
aigov_breaker_record(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, int outcome, uint64_t duration_ms,
    const aigov_breaker_permit_t *permit)
{
    int  rc;

    aigov_breaker_write_begin(b);
    rc = aigov_breaker_do_record(b, c, now_ms, outcome, duration_ms, permit);
    aigov_breaker_write_end(b);

    return rc;
}


static int
aigov_breaker_do_record(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, int outcome, uint64_t duration_ms,
    const aigov_breaker_permit_t *permit)
{
    unsigned  fail, slow;
    uint32_t  probes, min;
    uint64_t  now;

    now = aigov_breaker_clock(b, c, now_ms);

    if (outcome != AIGOV_BREAKER_SUCCESS && outcome != AIGOV_BREAKER_FAILURE)
    {
        outcome = AIGOV_BREAKER_IGNORE;
    }

    if (permit == NULL || permit->generation != b->generation) {
        b->stale++;
        return AIGOV_BREAKER_STALE;
    }

    fail = (outcome == AIGOV_BREAKER_FAILURE);
    slow = (c->slow_call_duration_ms && duration_ms > c->slow_call_duration_ms);

    if (permit->kind == AIGOV_BREAKER_PERMIT_CALL
        && b->state == AIGOV_BREAKER_CLOSED)
    {
        if (outcome == AIGOV_BREAKER_IGNORE) {
            return AIGOV_BREAKER_IGNORED;
        }

        /* before the stores to b: c is not reread and clamped again */
        min = aigov_breaker_min_calls(c);

        aigov_breaker_add(b, c, fail, slow);

        if (fail) {
            if (b->consecutive < UINT32_MAX) {
                b->consecutive++;
            }

        } else {
            b->consecutive = 0;
        }

        if (c->consecutive_failures
            && b->consecutive >= c->consecutive_failures)
        {
            aigov_breaker_to_open(b, c, now, AIGOV_BREAKER_REASON_CONSECUTIVE,
                                  aigov_breaker_open_base(c));
            return AIGOV_BREAKER_TRIPPED;
        }

        if (b->calls < min) {
            return AIGOV_BREAKER_RECORDED;
        }

        if (aigov_breaker_rate_reached(b->failures, b->calls,
                                       c->failure_rate_threshold))
        {
            aigov_breaker_to_open(b, c, now,
                                  AIGOV_BREAKER_REASON_FAILURE_RATE,
                                  aigov_breaker_open_base(c));
            return AIGOV_BREAKER_TRIPPED;
        }

        if (aigov_breaker_rate_reached(b->slow, b->calls,
                                       c->slow_call_rate_threshold))
        {
            aigov_breaker_to_open(b, c, now, AIGOV_BREAKER_REASON_SLOW_RATE,
                                  aigov_breaker_open_base(c));
            return AIGOV_BREAKER_TRIPPED;
        }

        return AIGOV_BREAKER_RECORDED;
    }

    if (permit->kind != AIGOV_BREAKER_PERMIT_PROBE
        || b->state != AIGOV_BREAKER_HALF_OPEN
        || permit->slot >= AIGOV_BREAKER_MAX_PROBES
        || !(b->probe_busy & (1u << permit->slot))
        || b->probe_id[permit->slot] != permit->probe_id)
    {
        /* recorded twice, or its slot timed out and went to another */
        b->stale++;
        return AIGOV_BREAKER_STALE;
    }

    b->probe_busy &= ~(1u << permit->slot);

    if (outcome == AIGOV_BREAKER_IGNORE) {
        return AIGOV_BREAKER_IGNORED;
    }

    b->probe_done++;
    b->probe_failures += fail;
    b->probe_slow += slow;

    probes = aigov_breaker_probes(c);

    if (b->probe_done < probes) {
        return AIGOV_BREAKER_RECORDED;
    }

    if (aigov_breaker_rate_reached(b->probe_failures, b->probe_done,
                                   c->failure_rate_threshold))
    {
        aigov_breaker_to_open(b, c, now, AIGOV_BREAKER_REASON_FAILURE_RATE,
                              aigov_breaker_next_open(b, c));
        return AIGOV_BREAKER_REOPENED;
    }

    if (aigov_breaker_rate_reached(b->probe_slow, b->probe_done,
                                   c->slow_call_rate_threshold))
    {
        aigov_breaker_to_open(b, c, now, AIGOV_BREAKER_REASON_SLOW_RATE,
                              aigov_breaker_next_open(b, c));
        return AIGOV_BREAKER_REOPENED;
    }

    aigov_breaker_to_closed(b, c, now, AIGOV_BREAKER_REASON_PROBES_PASSED);

    return AIGOV_BREAKER_RECOVERED;
}


void
aigov_breaker_release(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, const aigov_breaker_permit_t *permit)
{
    (void) aigov_breaker_record(b, c, now_ms, AIGOV_BREAKER_IGNORE, 0, permit);
}


void
aigov_breaker_force(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    int state, uint64_t now_ms, uint64_t open_ms)
{
    aigov_breaker_write_begin(b);
    aigov_breaker_do_force(b, c, state, now_ms, open_ms);
    aigov_breaker_write_end(b);
}


static void
aigov_breaker_do_force(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    int state, uint64_t now_ms, uint64_t open_ms)
{
    uint64_t  now;
    uint32_t  d;

    now = aigov_breaker_clock_all(b, c, now_ms);

    switch (state) {

    case AIGOV_BREAKER_CLOSED:
        aigov_breaker_to_closed(b, c, now, AIGOV_BREAKER_REASON_FORCED);
        break;

    case AIGOV_BREAKER_HALF_OPEN:
        aigov_breaker_to_half_open(b, now, AIGOV_BREAKER_REASON_FORCED);
        break;

    case AIGOV_BREAKER_OPEN:
        if (open_ms) {
            d = (open_ms > AIGOV_BREAKER_MAX_DURATION_MS)
                ? AIGOV_BREAKER_MAX_DURATION_MS : (uint32_t) open_ms;

        } else if (b->state == AIGOV_BREAKER_HALF_OPEN) {
            d = aigov_breaker_next_open(b, c);

        } else if (b->state == AIGOV_BREAKER_OPEN && b->open_ms) {
            d = b->open_ms;

        } else {
            d = aigov_breaker_open_base(c);
        }

        aigov_breaker_to_open(b, c, now, AIGOV_BREAKER_REASON_FORCED, d);
        break;

    default:
        return;
    }

    b->forced++;
}


int
aigov_breaker_remote_trip(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, uint64_t open_ms)
{
    int  rc;

    aigov_breaker_write_begin(b);
    rc = aigov_breaker_do_remote_trip(b, c, now_ms, open_ms);
    aigov_breaker_write_end(b);

    return rc;
}


static int
aigov_breaker_do_remote_trip(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms, uint64_t open_ms)
{
    uint64_t  now, max, until;

    now = aigov_breaker_clock_all(b, c, now_ms);

    if (open_ms == 0) {
        return 0;
    }

    max = aigov_breaker_open_cap(c);

    if (open_ms > max) {
        open_ms = max;
    }

    until = aigov_breaker_deadline(now, open_ms);

    if (b->state == AIGOV_BREAKER_OPEN && now < b->open_until_ms) {
        if (until <= b->open_until_ms) {
            return 0;
        }

        /* still the same incident: no transition, only longer */
        b->open_until_ms = until;

        if (open_ms > b->open_ms) {
            b->open_ms = (uint32_t) open_ms;
        }

        return 2;
    }

    aigov_breaker_to_open(b, c, now, AIGOV_BREAKER_REASON_REMOTE,
                          (uint32_t) open_ms);
    b->forced++;

    return 1;
}


/* --- read-only views -------------------------------------------------- */


/* The time a const view uses: what a mutating call would have used. */
static uint64_t
aigov_breaker_now(const aigov_breaker_t *b, uint64_t now)
{
    /*
     * Behind the latest time seen, by a little (clamp) or a lot (rebase,
     * which keeps the remaining times): either way the view is that of
     * the latest time.
     */
    return (now < b->last_ms) ? b->last_ms : now;
}


int
aigov_breaker_state(const aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms)
{
    uint64_t  now;

    (void) c;

    now = aigov_breaker_now(b, now_ms);

    switch (b->state) {

    case AIGOV_BREAKER_OPEN:
        return (now >= b->open_until_ms) ? AIGOV_BREAKER_HALF_OPEN
                                         : AIGOV_BREAKER_OPEN;

    case AIGOV_BREAKER_HALF_OPEN:
        return AIGOV_BREAKER_HALF_OPEN;

    default:
        return AIGOV_BREAKER_CLOSED;
    }
}


static void
aigov_breaker_window_view(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now, uint32_t *calls,
    uint32_t *failures, uint32_t *slow)
{
    uint64_t                       cur, e, first;
    uint32_t                       size;
    const aigov_breaker_bucket_t  *bk;

    *calls = 0;
    *failures = 0;
    *slow = 0;

    if (!aigov_breaker_shape_ok(b, c)) {
        /* the next mutating call empties it */
        return;
    }

    if (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_COUNT) {
        *calls = b->calls;
        *failures = b->failures;
        *slow = b->slow;
        return;
    }

    size = aigov_breaker_window_size(c);
    cur = now / aigov_breaker_bucket_ms(c);

    if (cur <= b->w.time.epoch) {
        *calls = b->calls;
        *failures = b->failures;
        *slow = b->slow;
        return;
    }

    if (cur - b->w.time.epoch >= size) {
        return;
    }

    /* buckets still inside the window as of now, without ageing b */
    first = (cur + 1 > size) ? cur + 1 - size : 0;

    for (e = first; e <= b->w.time.epoch; e++) {
        bk = &b->w.time.bucket[e % size];
        *calls += bk->calls;
        *failures += bk->failures;
        *slow += bk->slow;
    }
}


void
aigov_breaker_stats(const aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, aigov_breaker_stats_t *out)
{
    uint64_t  now, timeout, max;
    uint32_t  min;
    unsigned  i;

    memset(out, 0, sizeof(aigov_breaker_stats_t));

    now = aigov_breaker_now(b, now_ms);
    max = aigov_breaker_open_cap(c);

    out->state = (uint32_t) aigov_breaker_state(b, c, now_ms);
    out->reason = b->reason;
    out->generation = b->generation;
    out->changed_ms = b->changed_ms;
    out->open_ms = (b->open_ms > max) ? (uint32_t) max : b->open_ms;

    if (b->state == AIGOV_BREAKER_OPEN) {
        out->open_until_ms = b->open_until_ms;

        if (now < b->open_until_ms) {
            out->retry_after_ms = b->open_until_ms - now;

            if (out->retry_after_ms > max) {
                out->retry_after_ms = max;
            }
        }
    }

    aigov_breaker_window_view(b, c, now, &out->calls, &out->failures,
                              &out->slow);

    min = aigov_breaker_min_calls(c);

    if (out->calls && out->calls >= min) {
        out->failure_rate = (int32_t) ((uint64_t) out->failures * 10000
                                       / out->calls);
        out->slow_rate = (int32_t) ((uint64_t) out->slow * 10000
                                    / out->calls);

    } else {
        out->failure_rate = -1;
        out->slow_rate = -1;
    }

    out->consecutive = b->consecutive;

    if (b->state == AIGOV_BREAKER_HALF_OPEN && aigov_breaker_shape_ok(b, c)) {
        timeout = aigov_breaker_probe_timeout(c);

        for (i = 0; i < AIGOV_BREAKER_MAX_PROBES; i++) {
            if ((b->probe_busy & (1u << i))
                && now - b->probe_ms[i] < timeout)
            {
                out->probes_in_flight++;
            }
        }

        out->probes_done = b->probe_done;
        out->probe_failures = b->probe_failures;
        out->probe_slow = b->probe_slow;
    }

    /* counted without the mutex too: aigov_breaker_allow_closed() */
    out->allowed = __atomic_load_n(&b->allowed, __ATOMIC_RELAXED);
    out->rejected = b->rejected;
    out->stale = b->stale;
    out->probes_lost = b->probes_lost;
    out->trips = b->trips;
    out->forced = b->forced;
    out->clock_jumps = b->clock_jumps;
}


const char *
aigov_breaker_verify(const aigov_breaker_t *b, const aigov_breaker_conf_t *c)
{
    uint32_t                       size, probes, i, word, bit, f, s, calls;
    uint64_t                       max;
    const aigov_breaker_bucket_t  *bk;

    if (b->state > AIGOV_BREAKER_HALF_OPEN) {
        return "invalid state";
    }

    if (b->reason > AIGOV_BREAKER_REASON_REMOTE) {
        return "invalid reason";
    }

    if (b->changed_ms > b->last_ms) {
        return "transition in the future";
    }

    if (b->failures > b->calls || b->slow > b->calls) {
        return "more failures or slow calls than calls";
    }

    max = aigov_breaker_open_cap(c);

    if (b->open_ms > max) {
        return "open duration above the maximum";
    }

    if (b->state == AIGOV_BREAKER_OPEN) {
        if (b->open_until_ms > b->last_ms
            && b->open_until_ms - b->last_ms > max)
        {
            return "open for longer than the maximum";
        }

        if (b->open_ms == 0) {
            return "open without a duration";
        }

    } else if (b->open_until_ms != 0) {
        return "open_until set outside OPEN";
    }

    if (b->state == AIGOV_BREAKER_CLOSED && b->open_ms != 0) {
        return "backoff kept after closing";
    }

    if (b->state != AIGOV_BREAKER_HALF_OPEN) {
        if (b->probe_busy || b->probe_done || b->probe_failures
            || b->probe_slow)
        {
            return "probe state outside HALF_OPEN";
        }
    }

    if (!aigov_breaker_shape_ok(b, c)) {
        /* not adopted yet: the layout is the old configuration's */
        return NULL;
    }

    probes = aigov_breaker_probes(c);

    if (probes < 32 && (b->probe_busy >> probes)) {
        return "probe slot beyond the limit";
    }

    if (aigov_breaker_popcount(b->probe_busy) + b->probe_done > probes) {
        return "more probes than permitted";
    }

    if (b->state == AIGOV_BREAKER_HALF_OPEN && b->probe_done >= probes) {
        return "half-open decision not taken";
    }

    if (b->probe_failures > b->probe_done || b->probe_slow > b->probe_done) {
        return "more probe failures than probes";
    }

    for (i = 0; i < AIGOV_BREAKER_MAX_PROBES; i++) {
        if ((b->probe_busy & (1u << i))
            && (b->probe_ms[i] > b->last_ms || b->probe_id[i] == 0))
        {
            return "bad probe slot";
        }
    }

    size = aigov_breaker_window_size(c);

    if (aigov_breaker_window_type(c) == AIGOV_BREAKER_WINDOW_TIME) {

        if (b->w.time.epoch != b->last_ms / aigov_breaker_bucket_ms(c)) {
            return "time window not aged to the latest time";
        }

        calls = 0;
        f = 0;
        s = 0;

        for (i = 0; i < AIGOV_BREAKER_MAX_BUCKETS; i++) {
            bk = &b->w.time.bucket[i];

            if (i >= size && (bk->calls || bk->failures || bk->slow)) {
                return "bucket beyond the window";
            }

            if (bk->failures > bk->calls || bk->slow > bk->calls) {
                return "bucket with more failures than calls";
            }

            calls += bk->calls;
            f += bk->failures;
            s += bk->slow;
        }

        if (calls != b->calls || f != b->failures || s != b->slow) {
            return "time window totals do not match the buckets";
        }

        return NULL;
    }

    if (b->calls > size) {
        return "count window holds more calls than its size";
    }

    if (b->w.ring.head >= size) {
        return "ring head beyond the window";
    }

    if (b->calls < size && b->w.ring.head != b->calls) {
        return "ring head does not follow a partial window";
    }

    /* slots [0, calls) hold calls: a partial ring fills from slot 0 */
    f = 0;
    s = 0;

    for (word = 0; word < AIGOV_BREAKER_MAX_CALLS / 32; word++) {
        i = word * 32;

        if (b->calls >= i + 32) {
            bit = 0xffffffff;

        } else if (b->calls <= i) {
            bit = 0;

        } else {
            bit = (1u << (b->calls - i)) - 1;
        }

        if ((b->w.ring.fail[word] | b->w.ring.slow[word]) & ~bit) {
            return "ring bit outside the recorded calls";
        }

        f += aigov_breaker_popcount(b->w.ring.fail[word]);
        s += aigov_breaker_popcount(b->w.ring.slow[word]);
    }

    if (f != b->failures || s != b->slow) {
        return "count window totals do not match the ring";
    }

    return NULL;
}


const char *
aigov_breaker_state_name(int state)
{
    switch (state) {
    case AIGOV_BREAKER_CLOSED:
        return "closed";
    case AIGOV_BREAKER_OPEN:
        return "open";
    case AIGOV_BREAKER_HALF_OPEN:
        return "half_open";
    default:
        return "unknown";
    }
}


const char *
aigov_breaker_event_name(int event)
{
    switch (event) {
    case AIGOV_BREAKER_RECORDED:
        return "recorded";
    case AIGOV_BREAKER_TRIPPED:
        return "tripped";
    case AIGOV_BREAKER_REOPENED:
        return "reopened";
    case AIGOV_BREAKER_RECOVERED:
        return "recovered";
    case AIGOV_BREAKER_IGNORED:
        return "ignored";
    case AIGOV_BREAKER_STALE:
        return "stale";
    default:
        return "unknown";
    }
}


const char *
aigov_breaker_reason_name(int reason)
{
    switch (reason) {
    case AIGOV_BREAKER_REASON_NONE:
        return "none";
    case AIGOV_BREAKER_REASON_FAILURE_RATE:
        return "failure_rate";
    case AIGOV_BREAKER_REASON_SLOW_RATE:
        return "slow_call_rate";
    case AIGOV_BREAKER_REASON_CONSECUTIVE:
        return "consecutive_failures";
    case AIGOV_BREAKER_REASON_PROBES_PASSED:
        return "probes_passed";
    case AIGOV_BREAKER_REASON_OPEN_EXPIRED:
        return "open_expired";
    case AIGOV_BREAKER_REASON_FORCED:
        return "forced";
    case AIGOV_BREAKER_REASON_REMOTE:
        return "remote";
    default:
        return "unknown";
    }
}
