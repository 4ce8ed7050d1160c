/*
 * libFuzzer target: the circuit breaker (aigov_breaker.h).
 *
 * The first byte picks a mode.
 *
 * Classifier (odd first byte): the rest is a failure condition list for
 * aigov_breaker_parse_classifier().  On success the classifier passes
 * aigov_breaker_conf_check(), no status or error is both a failure and
 * ignored, and aigov_breaker_format_classifier() gives a text that parses
 * back to the same bits.  On error the classifier is zeroed and the message
 * is one line of printable ASCII.
 *
 * State machine (even first byte): 14 bytes build a valid configuration,
 * then 3-byte operations drive allow (allow_closed first, as the glue;
 * when it lets a call through, allow() on a copy must agree to the byte) /
 * record / release / force / remote_trip and the clock (small steps, big steps back, a bogus far
 * future, returns to sane times).  After every step:
 *   - aigov_breaker_verify() finds the state consistent;
 *   - state() is CLOSED, OPEN or HALF_OPEN; a REJECT carries
 *     0 < retry_after_ms <= the maximum open duration;
 *   - generation never goes down; record()'s event matches the states
 *     before and after (TRIPPED: CLOSED -> OPEN, ...);
 *   - no over-allocation: within one half-open generation the probes
 *     granted, minus those released or lost, never exceed half_open_probes;
 *   - a shadow model, written here independently, holds the outcomes
 *     recorded since the window was last emptied: calls, failures and slow
 *     calls in the window, the consecutive-failure run, and whether a
 *     record had to trip, all match;
 * and at the end, once the clock is sane and has run past the maximum open
 * duration and the probe timeout, a call is let through: never stuck.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_breaker.h"


#define POOL        64
#define SHADOW      8192
#define SANE        1000000000ULL


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef struct {
    uint64_t     epoch;
    uint8_t      fail;
    uint8_t      slow;
} shadow_call_t;


typedef struct {
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    uint64_t                now;

    aigov_breaker_permit_t  pool[POOL];
    unsigned                npool;

    /* probe accounting per half-open generation */
    uint64_t                ho_gen;
    uint64_t                ho_granted;
    uint64_t                ho_freed;
    uint64_t                ho_lost_base;

    /*
     * The shadow window: a log of the outcomes since it was last emptied,
     * [first, nlog) still inside the window, with running totals.
     */
    shadow_call_t           log[SHADOW];
    unsigned                nlog;
    unsigned                first;
    uint32_t                calls;
    uint32_t                fails;
    uint32_t                slow;
    uint32_t                consecutive;
    uint32_t                jumps;
    uint64_t                gen;
} fuzz_t;


/* abort() with the failed invariant named, for replaying a crash input */
#define check(expr)                                                          \
    do {                                                                     \
        if (!(expr)) {                                                       \
            fprintf(stderr, "fuzz_breaker.c:%d: invariant failed: %s\n",    \
                    __LINE__, #expr);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


/* --- classifier mode ------------------------------------------------- */

static void
fuzz_classifier(const uint8_t *data, size_t size)
{
    int                         r, st;
    char                        err[256], buf[AIGOV_BREAKER_CLASSIFIER_LEN];
    size_t                      n, i;
    unsigned                    w, e, bit;
    aigov_breaker_conf_t        c;
    aigov_breaker_classifier_t  cl, again, zero;

    memset(&zero, 0, sizeof(zero));
    memset(err, 'X', sizeof(err));

    if (aigov_breaker_parse_classifier(&cl, (const char *) data, size, err,
                                       sizeof(err))
        != AIGOV_BREAKER_OK)
    {
        check(memcmp(&cl, &zero, sizeof(cl)) == 0);

        n = strlen(err);
        check(n > 0 && n < sizeof(err));

        for (i = 0; i < n; i++) {
            check(err[i] >= 0x20 && err[i] < 0x7f);
        }

        return;
    }

    check(err[0] == '\0');

    for (w = 0; w < AIGOV_BREAKER_STATUS_WORDS; w++) {
        check((cl.fail_status[w] & cl.ignore_status[w]) == 0);
    }

    /* nothing outside 100..599 */
    check((cl.fail_status[15] | cl.ignore_status[15]) >> 20 == 0);
    check((cl.fail_errors & cl.ignore_errors) == 0);
    check(((cl.fail_errors | cl.ignore_errors) & ~AIGOV_BREAKER_ERR_ALL)
          == 0);

    aigov_breaker_conf_init(&c);
    c.classifier = cl;
    check(aigov_breaker_conf_check(&c, NULL, 0) == AIGOV_BREAKER_OK);

    n = aigov_breaker_format_classifier(&cl, buf, sizeof(buf));
    check(n > 0 && n < sizeof(buf) && strlen(buf) == n);

    check(aigov_breaker_parse_classifier(&again, buf, n, err, sizeof(err))
          == AIGOV_BREAKER_OK);
    check(memcmp(&cl, &again, sizeof(cl)) == 0);

    /* classification agrees with the bits: errors first, then status */
    for (i = 0; i < 700; i++) {
        st = (int) i - 50;
        e = (unsigned) i % 17;

        r = aigov_breaker_classify(&c, st, e);

        if (e & cl.fail_errors) {
            check(r == AIGOV_BREAKER_FAILURE);

        } else if (e & cl.ignore_errors) {
            check(r == AIGOV_BREAKER_IGNORE);

        } else if (st < 100 || st > 599) {
            check(r == AIGOV_BREAKER_IGNORE);

        } else {
            bit = (unsigned) st - 100;

            if ((cl.ignore_status[bit / 32] >> (bit % 32)) & 1) {
                check(r == AIGOV_BREAKER_IGNORE);

            } else if ((cl.fail_status[bit / 32] >> (bit % 32)) & 1) {
                check(r == AIGOV_BREAKER_FAILURE);

            } else {
                check(r == AIGOV_BREAKER_SUCCESS);
            }
        }
    }
}


/* --- state machine mode ---------------------------------------------- */

static uint32_t
min_calls(const aigov_breaker_conf_t *c)
{
    if (c->window_type == AIGOV_BREAKER_WINDOW_COUNT
        && c->minimum_calls > c->window_size)
    {
        return c->window_size;
    }

    return c->minimum_calls;
}


static int
reached(uint32_t count, uint32_t calls, uint32_t threshold)
{
    return threshold && calls
           && (uint64_t) count * 100 >= (uint64_t) threshold * calls;
}


static void
shadow_empty(fuzz_t *f)
{
    f->nlog = 0;
    f->first = 0;
    f->calls = 0;
    f->fails = 0;
    f->slow = 0;
}


static void
shadow_reset(fuzz_t *f)
{
    shadow_empty(f);
    f->consecutive = 0;
}


static void
shadow_drop(fuzz_t *f)
{
    f->calls--;
    f->fails -= f->log[f->first].fail;
    f->slow -= f->log[f->first].slow;
    f->first++;
}


static void
shadow_push(fuzz_t *f, int fail, int slow)
{
    check(f->nlog < SHADOW);

    f->log[f->nlog].epoch = (f->c.window_type == AIGOV_BREAKER_WINDOW_TIME)
                            ? f->b.last_ms / f->c.bucket_ms : 0;
    f->log[f->nlog].fail = (uint8_t) fail;
    f->log[f->nlog].slow = (uint8_t) slow;
    f->nlog++;

    f->calls++;
    f->fails += (uint32_t) fail;
    f->slow += (uint32_t) slow;

    if (f->c.window_type == AIGOV_BREAKER_WINDOW_COUNT
        && f->nlog - f->first > f->c.window_size)
    {
        shadow_drop(f);
    }
}


/*
 * The window as the shadow sees it at the breaker's latest time: calls of
 * the last window_size buckets.  The breaker's time never runs backwards
 * without a clock jump, which empties the log, so the log is in order.
 */
static void
shadow_window(fuzz_t *f, uint32_t *calls, uint32_t *fails, uint32_t *slow)
{
    uint64_t  cur;

    if (f->c.window_type == AIGOV_BREAKER_WINDOW_TIME) {
        cur = f->b.last_ms / f->c.bucket_ms;

        while (f->first < f->nlog
               && f->log[f->first].epoch + f->c.window_size <= cur)
        {
            shadow_drop(f);
        }
    }

    *calls = f->calls;
    *fails = f->fails;
    *slow = f->slow;
}


/*
 * A clock jump empties a TIME window: the shadow drops its calls too (the
 * consecutive-failure run is not a window and carries on).  Called right
 * after each mutating call, before the shadow judges anything.
 */
static void
sync_jumps(fuzz_t *f)
{
    if (f->b.clock_jumps != f->jumps) {
        f->jumps = f->b.clock_jumps;

        if (f->c.window_type == AIGOV_BREAKER_WINDOW_TIME) {
            shadow_empty(f);
        }
    }
}


/* The shadow's TIME window as of a later time t, without ageing the log. */
static uint32_t
shadow_calls_at(const fuzz_t *f, uint64_t t, uint32_t *fails)
{
    unsigned  i;
    uint32_t  calls;
    uint64_t  cur;

    cur = t / f->c.bucket_ms;
    calls = 0;
    *fails = 0;

    for (i = f->first; i < f->nlog; i++) {
        if (f->log[i].epoch + f->c.window_size > cur) {
            calls++;
            *fails += f->log[i].fail;
        }
    }

    return calls;
}


/* Checks that hold after every step. */
static void
invariants(fuzz_t *f)
{
    int                    st;
    uint32_t               calls, fails, slow, max;
    uint64_t               t;
    aigov_breaker_stats_t  s;

    check(aigov_breaker_verify(&f->b, &f->c) == NULL);

    max = aigov_breaker_open_max(&f->c);

    st = aigov_breaker_state(&f->b, &f->c, f->now);
    check(st == AIGOV_BREAKER_CLOSED || st == AIGOV_BREAKER_OPEN
          || st == AIGOV_BREAKER_HALF_OPEN);

    aigov_breaker_stats(&f->b, &f->c, f->b.last_ms, &s);

    check(s.state == (uint32_t) aigov_breaker_state(&f->b, &f->c,
                                                     f->b.last_ms));
    check(s.generation >= f->gen);
    check(s.retry_after_ms <= max);
    check(s.open_ms <= max);
    check(s.failures <= s.calls && s.slow <= s.calls);
    check(s.probes_in_flight + s.probes_done <= f->c.half_open_probes);
    check(s.probe_failures <= s.probes_done);

    if (s.state == AIGOV_BREAKER_OPEN) {
        check(s.retry_after_ms > 0);
    }

    if (s.calls && s.calls >= min_calls(&f->c)) {
        check(s.failure_rate == (int32_t) ((uint64_t) s.failures * 10000
                                           / s.calls));
        check(s.failure_rate >= 0 && s.failure_rate <= 10000);

    } else {
        check(s.failure_rate == -1 && s.slow_rate == -1);
    }

    sync_jumps(f);

    /* entering CLOSED empties the window */
    if (s.generation != f->gen && f->b.state == AIGOV_BREAKER_CLOSED) {
        shadow_reset(f);
    }

    f->gen = s.generation;

    shadow_window(f, &calls, &fails, &slow);
    check(calls == s.calls && fails == s.failures && slow == s.slow);

    if (f->b.state == AIGOV_BREAKER_CLOSED) {
        check(f->consecutive == s.consecutive);
    }

    /* a read-only view ahead of the breaker's clock ages it on the fly */
    if (f->c.window_type == AIGOV_BREAKER_WINDOW_TIME
        && f->b.last_ms < UINT64_MAX / 2)
    {
        t = f->b.last_ms
            + (uint64_t) (f->nlog % (f->c.window_size + 2)) * f->c.bucket_ms
            + f->gen % 7;

        aigov_breaker_stats(&f->b, &f->c, t, &s);
        calls = shadow_calls_at(f, t, &fails);
        check(calls == s.calls && fails == s.failures);
    }

    /* probes: granted - released - lost <= limit in one generation */
    if (f->b.state == AIGOV_BREAKER_HALF_OPEN && f->ho_gen == s.generation) {
        check(f->ho_granted - f->ho_freed - (s.probes_lost - f->ho_lost_base)
              <= f->c.half_open_probes);
    }
}


static int
op_allow(fuzz_t *f)
{
    int                     rc, before;
    uint64_t                gen;
    aigov_breaker_t         copy;
    aigov_breaker_permit_t  p, q;
    aigov_breaker_stats_t   s;

    before = f->b.state;
    gen = f->b.generation;

    /* as the glue: without the mutex first, then allow() if it asks */

    copy = f->b;

    rc = aigov_breaker_allow_closed(&f->b, &f->c, f->now, &p);

    if (rc == AIGOV_BREAKER_AGAIN) {
        check(memcmp(&copy, &f->b, sizeof(aigov_breaker_t)) == 0);
        rc = aigov_breaker_allow(&f->b, &f->c, f->now, &p);

    } else {
        /* what allow() would have done: the same permit, the same bytes */
        check(rc == AIGOV_BREAKER_ALLOW);
        check(aigov_breaker_allow(&copy, &f->c, f->now, &q)
              == AIGOV_BREAKER_ALLOW);
        check(memcmp(&p, &q, sizeof(aigov_breaker_permit_t)) == 0);
        copy.seq = f->b.seq;
        check(memcmp(&copy, &f->b, sizeof(aigov_breaker_t)) == 0);
    }

    if (rc == AIGOV_BREAKER_REJECT) {
        check(p.kind == AIGOV_BREAKER_PERMIT_NONE);
        check(p.retry_after_ms > 0);
        check(p.retry_after_ms <= aigov_breaker_open_max(&f->c));
        check(f->b.state != AIGOV_BREAKER_CLOSED);
        return rc;
    }

    check(p.retry_after_ms == 0);
    check(p.generation == f->b.generation);

    if (rc == AIGOV_BREAKER_ALLOW) {
        check(p.kind == AIGOV_BREAKER_PERMIT_CALL);
        check(f->b.state == AIGOV_BREAKER_CLOSED);
        check(f->b.generation == gen);

    } else {
        check(rc == AIGOV_BREAKER_ALLOW_PROBE);
        check(p.kind == AIGOV_BREAKER_PERMIT_PROBE);
        check(f->b.state == AIGOV_BREAKER_HALF_OPEN);
        check(p.slot < f->c.half_open_probes);

        /* only an expired OPEN moves, by one generation */
        check(f->b.generation == gen
              || (before == AIGOV_BREAKER_OPEN && f->b.generation == gen + 1));

        if (p.generation != f->ho_gen) {
            aigov_breaker_stats(&f->b, &f->c, f->b.last_ms, &s);
            f->ho_gen = p.generation;
            f->ho_granted = 0;
            f->ho_freed = 0;
            f->ho_lost_base = s.probes_lost;
        }

        f->ho_granted++;
    }

    if (f->npool < POOL) {
        f->pool[f->npool++] = p;

    } else {
        f->pool[p.probe_id % POOL] = p;
    }

    return rc;
}


static void
op_record(fuzz_t *f, uint8_t a, uint8_t b)
{
    int                     outcome, ev, before, fail, slow, must;
    unsigned                i, pop;
    uint32_t                calls, fails, slw;
    uint64_t                gen, duration, lost, freed;
    aigov_breaker_permit_t  p;

    if (f->npool == 0) {
        return;
    }

    i = a % f->npool;
    p = f->pool[i];

    if (!(a & 0x80)) {
        /* usually recorded once; sometimes kept to be recorded again */
        f->pool[i] = f->pool[--f->npool];
    }

    outcome = b % 3;
    duration = (b & 0x80) ? (uint64_t) (b & 0x7f) * 997 : (b >> 2);

    if (b % 7 == 6) {
        outcome = (int) b;          /* not an outcome: IGNORE */
    }

    before = f->b.state;
    gen = f->b.generation;
    pop = (unsigned) __builtin_popcount(f->b.probe_busy);
    lost = f->b.probes_lost;
    freed = 0;

    if (b % 11 == 10) {
        /* release() returns nothing: count the slots it gave back */
        aigov_breaker_release(&f->b, &f->c, f->now, &p);
        outcome = AIGOV_BREAKER_IGNORE;
        ev = -1;

        freed = pop - (unsigned) __builtin_popcount(f->b.probe_busy)
                - (f->b.probes_lost - lost);
        check(freed <= 1);
        check(freed == 0 || p.kind == AIGOV_BREAKER_PERMIT_PROBE);

    } else {
        ev = aigov_breaker_record(&f->b, &f->c, f->now, outcome, duration,
                                  &p);

        if (ev == AIGOV_BREAKER_IGNORED
            && p.kind == AIGOV_BREAKER_PERMIT_PROBE)
        {
            freed = 1;
        }
    }

    sync_jumps(f);

    if (p.generation == f->ho_gen) {
        f->ho_freed += freed;
    }

    fail = (outcome == AIGOV_BREAKER_FAILURE);
    slow = (duration > f->c.slow_call_duration_ms);

    switch (ev) {

    case AIGOV_BREAKER_TRIPPED:
        check(before == AIGOV_BREAKER_CLOSED
              && f->b.state == AIGOV_BREAKER_OPEN);
        check(f->b.generation == gen + 1);
        break;

    case AIGOV_BREAKER_REOPENED:
        check(before == AIGOV_BREAKER_HALF_OPEN
              && f->b.state == AIGOV_BREAKER_OPEN);
        check(p.kind == AIGOV_BREAKER_PERMIT_PROBE);
        check(f->b.generation == gen + 1);
        break;

    case AIGOV_BREAKER_RECOVERED:
        check(before == AIGOV_BREAKER_HALF_OPEN
              && f->b.state == AIGOV_BREAKER_CLOSED);
        check(p.kind == AIGOV_BREAKER_PERMIT_PROBE);
        check(f->b.generation == gen + 1);
        break;

    case AIGOV_BREAKER_RECORDED:
    case AIGOV_BREAKER_IGNORED:
    case AIGOV_BREAKER_STALE:
    case -1:
        check(f->b.generation == gen);
        check(f->b.state == before);
        break;

    default:
        abort();
    }

    if (ev == AIGOV_BREAKER_IGNORED) {
        check(outcome != AIGOV_BREAKER_SUCCESS
              && outcome != AIGOV_BREAKER_FAILURE);
    }

    if (p.kind != AIGOV_BREAKER_PERMIT_CALL || before != AIGOV_BREAKER_CLOSED
        || (ev != AIGOV_BREAKER_RECORDED && ev != AIGOV_BREAKER_TRIPPED))
    {
        return;
    }

    /* a call recorded in CLOSED: the shadow follows, and judges */

    shadow_push(f, fail, slow);

    f->consecutive = fail ? f->consecutive + 1 : 0;

    shadow_window(f, &calls, &fails, &slw);

    must = (f->c.consecutive_failures
            && f->consecutive >= f->c.consecutive_failures)
           || (calls >= min_calls(&f->c)
               && (reached(fails, calls, f->c.failure_rate_threshold)
                   || reached(slw, calls, f->c.slow_call_rate_threshold)));

    check(must == (ev == AIGOV_BREAKER_TRIPPED));
}


static void
op_clock(fuzz_t *f, uint8_t a, uint8_t b)
{
    switch (b % 6) {

    case 0:
        f->now += (uint64_t) a * 1000;
        break;

    case 1:
        /* a worker with an older cached clock */
        f->now -= (f->now > a) ? a : f->now;
        break;

    case 2:
        /* the clock steps back a lot */
        f->now -= (f->now > (uint64_t) a * 60000) ? (uint64_t) a * 60000
                                                  : f->now;
        break;

    case 3:
        f->now = UINT64_MAX - (uint64_t) a * (b >> 3);
        break;

    case 4:
        f->now = SANE + (uint64_t) a * 100;
        break;

    default:
        f->now += (uint64_t) a * 10000000;
        break;
    }
}


static void
fuzz_machine(const uint8_t *data, size_t size)
{
    static fuzz_t           f;
    int                     rc;
    size_t                  i;
    uint8_t                 op, a, b;
    aigov_breaker_conf_t   *c;

    if (size < 14) {
        return;
    }

    memset(&f, 0, sizeof(f));
    c = &f.c;

    aigov_breaker_conf_init(c);

    c->window_type = data[0] & 1;

    if (c->window_type == AIGOV_BREAKER_WINDOW_COUNT) {
        c->window_size = 1 + ((data[1] | (uint32_t) data[2] << 8)
                              % AIGOV_BREAKER_MAX_CALLS);
    } else {
        c->window_size = 1 + data[1] % AIGOV_BREAKER_MAX_BUCKETS;
    }

    c->bucket_ms = 10 + (uint32_t) data[3] * 10;
    c->minimum_calls = 1 + data[4] % 40;
    c->failure_rate_threshold = 1 + data[5] % 100;
    c->slow_call_rate_threshold = data[6] % 101;
    c->slow_call_duration_ms = 1 + (uint32_t) data[7] * 10;
    c->consecutive_failures = data[8] % 8;
    c->open_duration_ms = 1 + (uint32_t) data[9] * 37;
    c->open_backoff = 100 + data[10] % 301;

    if (c->open_backoff > 100 || (data[11] & 1)) {
        c->open_duration_max_ms = c->open_duration_ms + 1
                                  + (uint32_t) data[11] * 100;
    }

    c->half_open_probes = 1 + data[12] % AIGOV_BREAKER_MAX_PROBES;
    c->probe_timeout_ms = 1 + (uint32_t) data[13] * 53;

    check(aigov_breaker_conf_check(c, NULL, 0) == AIGOV_BREAKER_OK);

    if (data[0] & 2) {
        aigov_breaker_init(&f.b);
    } else {
        memset(&f.b, 0, sizeof(f.b));
    }

    f.now = SANE;

    for (i = 14; i + 3 <= size; i += 3) {
        op = data[i];
        a = data[i + 1];
        b = data[i + 2];

        switch (op % 10) {

        case 0:
        case 1:
        case 2:
            (void) op_allow(&f);
            break;

        case 3:
        case 4:
            op_record(&f, a, b);
            break;

        case 5:
            f.now += (uint64_t) a * (1 + b);
            break;

        case 6:
            op_clock(&f, a, b);
            break;

        case 7:
            aigov_breaker_force(&f.b, c, (a % 4 == 3) ? 42 : a % 4, f.now,
                                (uint64_t) b * 13 * (a >> 2));
            break;

        case 8:
            rc = aigov_breaker_remote_trip(&f.b, c, f.now,
                                           (uint64_t) a * 100 * (1 + b));
            check(rc >= 0 && rc <= 2);
            break;

        default:
            /* the clock moves on with nothing else happening */
            f.now += (uint64_t) a * c->bucket_ms;
            break;
        }

        invariants(&f);
    }

    /* liveness: sane clock, past every deadline -> a call gets through */
    if (f.b.last_ms > (UINT64_MAX >> 2)) {
        f.now = SANE;
        (void) op_allow(&f);
        invariants(&f);
    }

    f.now = f.b.last_ms + aigov_breaker_open_max(c) + c->probe_timeout_ms + 1;
    rc = op_allow(&f);
    check(rc == AIGOV_BREAKER_ALLOW || rc == AIGOV_BREAKER_ALLOW_PROBE);
    invariants(&f);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }

    if (data[0] & 1) {
        fuzz_classifier(data + 1, size - 1);

    } else {
        fuzz_machine(data + 1, size - 1);
    }

    return 0;
}
