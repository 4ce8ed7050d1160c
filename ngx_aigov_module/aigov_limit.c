/*
 * ngx_aigov: rate-limit math (see include/aigov_limit.h for the exact
 * semantics).  No nginx headers here: tests/ links this file on its own.
 */

#include <string.h>
#include <stdio.h>
#include <jansson.h>

#include "aigov_limit.h"


#define AIGOV_NS_PER_MS     1000000

#define AIGOV_GCRA_TAT_MAX  (2 * AIGOV_GCRA_TIME_MAX)

#ifndef AIGOV_WINDOW_K
#define AIGOV_WINDOW_K      32      /* see aigov_window_sync_done() */
#endif


static void
aigov_limit_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", msg);
    }
}


/* --- arithmetic ----------------------------------------------------------- */

/*
 * floor(a * b / c) with a 128 bit intermediate built from 64 bit halves:
 * unsigned __int128 is not there on the 32 bit targets Debian builds
 * nginx for.  The loop runs only when a * b overflows 64 bits.
 */
AIGOV_HOT
uint64_t
aigov_limit_muldiv(uint64_t a, uint64_t b, uint64_t c, uint64_t max)
{
    int       i;
    uint64_t  a0, a1, b0, b1, p0, p1, p2, p3, mid, lo, hi, q, r, top;

    if (c == 0) {
        return max;
    }

    if (a == 0 || b <= UINT64_MAX / a) {
        q = a * b / c;
        return (q > max) ? max : q;
    }

    a0 = a & 0xffffffff;
    a1 = a >> 32;
    b0 = b & 0xffffffff;
    b1 = b >> 32;

    p0 = a0 * b0;
    p1 = a0 * b1;
    p2 = a1 * b0;
    p3 = a1 * b1;

    mid = (p0 >> 32) + (p1 & 0xffffffff) + (p2 & 0xffffffff);
    lo = (p0 & 0xffffffff) | (mid << 32);
    hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);

    if (hi >= c) {
        /* the quotient needs more than 64 bits */
        return max;
    }

    /* shift-subtract division; r < c holds before each step */
    q = 0;
    r = hi;

    for (i = 63; i >= 0; i--) {
        top = r >> 63;
        r = (r << 1) | ((lo >> i) & 1);
        q <<= 1;

        if (top || r >= c) {
            r -= c;
            q |= 1;
        }
    }

    return (q > max) ? max : q;
}


static uint64_t
aigov_limit_add(uint64_t a, uint64_t b, uint64_t max)
{
    return (a >= max || b >= max - a) ? max : a + b;
}


static uint32_t
aigov_limit_add32(uint32_t a, uint64_t b)
{
    return (b >= (uint64_t) (UINT32_MAX - a)) ? UINT32_MAX
                                              : a + (uint32_t) b;
}


static uint64_t
aigov_limit_ns_to_ms(uint64_t ns)
{
    return ns / AIGOV_NS_PER_MS + (ns % AIGOV_NS_PER_MS != 0);
}


/* --- GCRA ----------------------------------------------------------------- */

static int
aigov_gcra_blocked(const aigov_limit_spec_t *spec)
{
    return spec->rate == 0 || spec->period_ms == 0 || spec->burst == 0;
}


static uint64_t
aigov_gcra_now(const aigov_gcra_t *s, uint64_t now)
{
    uint64_t  ns;

    /*
     * now saturates at TIME_MAX, TAT at twice that: at the end of time
     * a bucket in debt stays in debt instead of looking full again.
     */
    ns = (now >= AIGOV_GCRA_TIME_MAX / AIGOV_NS_PER_MS)
         ? AIGOV_GCRA_TIME_MAX : now * AIGOV_NS_PER_MS;

    /* a worker's stale cached time, or a clock step back: time stands */
    return (ns < s->last) ? s->last : ns;
}


/* units * T in ns, rounded down, at least 1 ns per unit */
static uint64_t
aigov_gcra_span(const aigov_limit_spec_t *spec, uint64_t units)
{
    uint64_t  ns;

    ns = aigov_limit_muldiv(units,
                            (uint64_t) spec->period_ms * AIGOV_NS_PER_MS,
                            spec->rate, AIGOV_GCRA_TIME_MAX);

    return (ns < units) ? units : ns;
}


/* units left in a bucket with x ns of tau used: the inverse of the span */
static uint64_t
aigov_gcra_units(const aigov_limit_spec_t *spec, uint64_t tau, uint64_t x)
{
    uint64_t  p;

    if (x >= tau) {
        return 0;
    }

    p = (uint64_t) spec->period_ms * AIGOV_NS_PER_MS;

    if (p < spec->rate) {
        /* less than 1 ns per unit: the span counts 1 ns per unit */
        return (tau - x < spec->burst) ? tau - x : spec->burst;
    }

    return aigov_limit_muldiv(tau - x, spec->rate, p, spec->burst);
}


AIGOV_HOT
int
aigov_gcra_check(const aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r)
{
    uint64_t  ns, tat, x, tau, inc;

    r->limit = spec->rate;
    r->retry_after_ms = 0;

    if (aigov_gcra_blocked(spec)) {
        r->status = AIGOV_LIMIT_NEVER;
        r->allowed = 0;
        r->remaining = 0;
        r->reset_ms = 0;
        return r->status;
    }

    ns = aigov_gcra_now(s, now);
    tat = (s->tat > ns) ? s->tat : ns;
    x = tat - ns;
    tau = aigov_gcra_span(spec, spec->burst);

    if (cost > spec->burst) {
        r->status = AIGOV_LIMIT_NEVER;
        r->allowed = 0;
        r->remaining = aigov_gcra_units(spec, tau, x);
        r->reset_ms = aigov_limit_ns_to_ms(x);
        return r->status;
    }

    inc = (cost == 0) ? 0 : aigov_gcra_span(spec, cost);

    /* x <= 2^63, inc <= 2^62: the sums below cannot overflow */

    if (x + inc > tau) {
        r->status = AIGOV_LIMIT_REJECTED;
        r->allowed = 0;
        r->remaining = aigov_gcra_units(spec, tau, x);
        r->reset_ms = aigov_limit_ns_to_ms(x);
        r->retry_after_ms = aigov_limit_ns_to_ms(x + inc - tau);
        return r->status;
    }

    r->status = AIGOV_LIMIT_ALLOWED;
    r->allowed = 1;
    r->remaining = aigov_gcra_units(spec, tau, x + inc);
    r->reset_ms = aigov_limit_ns_to_ms(x + inc);

    return r->status;
}


AIGOV_HOT
void
aigov_gcra_commit(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost)
{
    aigov_gcra_charge(s, spec, now, cost);
}


int
aigov_gcra_take(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r)
{
    if (aigov_gcra_check(s, spec, now, cost, r) == AIGOV_LIMIT_ALLOWED
        && cost > 0)
    {
        aigov_gcra_commit(s, spec, now, cost);
    }

    return r->status;
}


AIGOV_HOT
void
aigov_gcra_charge(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t cost)
{
    uint64_t  ns, tat;

    if (cost == 0 || aigov_gcra_blocked(spec)) {
        return;
    }

    ns = aigov_gcra_now(s, now);
    tat = (s->tat > ns) ? s->tat : ns;

    s->tat = aigov_limit_add(tat, aigov_gcra_span(spec, cost),
                             AIGOV_GCRA_TAT_MAX);
    s->last = ns;
}


void
aigov_gcra_refund(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t units)
{
    uint64_t  ns, back;

    if (units == 0 || aigov_gcra_blocked(spec)) {
        return;
    }

    ns = aigov_gcra_now(s, now);
    back = aigov_gcra_span(spec, units);

    /* any TAT at or before now is a full bucket: no credit beyond it */
    s->tat = (s->tat > ns && s->tat - ns > back) ? s->tat - back : ns;
    s->last = ns;
}


void
aigov_gcra_settle(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t estimated, uint64_t actual)
{
    if (actual > estimated) {
        aigov_gcra_charge(s, spec, now, actual - estimated);

    } else if (actual < estimated) {
        aigov_gcra_refund(s, spec, now, estimated - actual);
    }
}


/* --- sliding windows ------------------------------------------------------ */

uint64_t
aigov_window_start(const aigov_limit_spec_t *spec, uint64_t now)
{
    if (spec->period_ms == 0) {
        return now;
    }

    return now - now % spec->period_ms;
}


/*
 * Moves the state to the window that holds now: the current counts become
 * the previous window's when the new window is the next one, else (a
 * fresh state, or windows without a take in between) the previous window
 * starts empty here and its fleet count is read again.  A clock that went
 * back to an earlier window keeps the current one: counts are never reset
 * by going back in time.
 */
static void
aigov_window_roll(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now)
{
    uint64_t  start;

    start = aigov_window_start(spec, now);

    if (start <= w->window) {
        return;
    }

    if (w->window != 0 && start - w->window == spec->period_ms) {
        w->prev_admitted = w->admitted;
        w->prev_unsynced = w->unsynced;
        w->prev_inflight = w->inflight;
        w->prev_global = w->global;

    } else {
        /*
         * Unsent admissions of a window two or more back are dropped: it
         * no longer counts anywhere.  Offered units are not per window
         * and stay.
         */
        w->prev_admitted = 0;
        w->prev_unsynced = 0;
        w->prev_inflight = 0;
        w->prev_global = 0;
    }

    w->window = start;
    w->admitted = 0;
    w->unsynced = 0;
    w->inflight = 0;
    w->global = 0;
    w->prev_reads = 0;
}


/* what is left of the previous window's count: floor(prev * left / period) */
static uint64_t
aigov_window_carry(const aigov_limit_spec_t *spec, uint64_t prev,
    uint64_t left)
{
    return aigov_limit_muldiv(prev, left, spec->period_ms, UINT64_MAX);
}


/*
 * How long until count + carry(prev) + cost <= limit, if nothing more is
 * counted: within this window while the previous count fades, else in the
 * next one, where count is the previous count.  cost <= limit.
 */
static uint64_t
aigov_window_wait(const aigov_limit_spec_t *spec, uint64_t count,
    uint64_t prev, uint64_t cost, uint64_t limit, uint64_t left)
{
    uint64_t  room, keep;

    if (count + cost > limit) {
        /* the next window: floor(count * left' / period) <= limit - cost */
        keep = aigov_limit_muldiv(limit - cost, spec->period_ms, count,
                                  spec->period_ms);
        return left + (spec->period_ms - keep);
    }

    room = limit - cost - count;

    if (aigov_window_carry(spec, prev, left) <= room) {
        return 0;
    }

    /* prev > 0 here: floor(prev * left' / period) <= room */
    keep = aigov_limit_muldiv(room, spec->period_ms, prev, left);

    return left - keep;
}


/*
 * This node's part of the window's quota.  When the fleet wants more than
 * the quota, rate * share: demand-proportional.  When the other nodes
 * want less than their part, what they leave: rate - others; so a fleet
 * under its limit never rejects because of stale shares.
 *
 * rate * share is rounded up or down by a dither that changes from
 * window to window: rounding up always would give the fleet up to one
 * unit per node per window too many (10 % of 20r/s on two nodes); the
 * dither is right on average.
 */
static uint64_t
aigov_window_allowance(const aigov_window_t *w,
    const aigov_limit_spec_t *spec)
{
    uint64_t  a, z;

    if (w->share == 0 || w->share >= AIGOV_WINDOW_SHARE_ONE) {
        return spec->rate;
    }

    /* splitmix64 of the window's number: uniform low 16 bits */
    z = w->window / spec->period_ms + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;

    a = ((uint64_t) spec->rate * w->share + (z & 0xffff)) >> 16;

    if (w->others < spec->rate && spec->rate - w->others > a) {
        a = spec->rate - w->others;
    }

    return (a > spec->rate) ? spec->rate : a;
}


int
aigov_window_check(const aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r)
{
    uint64_t        allowance, fleet, fleet_prev, mine, mine_prev, left,
                    behind, used, wait, mwait;
    aigov_window_t  cur;

    r->limit = spec->rate;
    r->retry_after_ms = 0;

    if (spec->rate == 0 || spec->period_ms == 0) {
        r->status = AIGOV_LIMIT_NEVER;
        r->allowed = 0;
        r->remaining = 0;
        r->reset_ms = 0;
        return r->status;
    }

    cur = *w;
    aigov_window_roll(&cur, spec, now);

    /* a clock that went back: as if at the window's start, for longer */
    behind = (now < cur.window) ? cur.window - now : 0;
    left = cur.window + spec->period_ms - (now + behind);

    allowance = aigov_window_allowance(&cur, spec);

    fleet = (uint64_t) cur.global + cur.unsynced + cur.inflight;
    fleet_prev = (uint64_t) cur.prev_global + cur.prev_unsynced
                 + cur.prev_inflight;
    mine = cur.admitted;
    mine_prev = cur.prev_admitted;

    r->reset_ms = (fleet > 0 || mine > 0) ? behind + left + spec->period_ms
                  : (fleet_prev > 0 || mine_prev > 0) ? behind + left : 0;

    used = mine + aigov_window_carry(spec, mine_prev, left);
    r->remaining = (allowance > used) ? allowance - used : 0;

    used = fleet + aigov_window_carry(spec, fleet_prev, left);
    used = (spec->rate > used) ? spec->rate - used : 0;
    r->remaining = (r->remaining < used) ? r->remaining : used;

    if (cost > spec->rate) {
        r->status = AIGOV_LIMIT_NEVER;
        r->allowed = 0;
        return r->status;
    }

    if (cost > r->remaining) {
        r->status = AIGOV_LIMIT_REJECTED;
        r->allowed = 0;

        wait = aigov_window_wait(spec, fleet, fleet_prev, cost, spec->rate,
                                 left);

        /* this window's share too small: the next one's may not be */
        mwait = (cost <= allowance)
                ? aigov_window_wait(spec, mine, mine_prev, cost, allowance,
                                    left)
                : left;
        wait = (wait > mwait) ? wait : mwait;

        r->retry_after_ms = (wait > 0) ? behind + wait : 1;
        return r->status;
    }

    r->status = AIGOV_LIMIT_ALLOWED;
    r->allowed = 1;
    r->remaining -= cost;

    if (cost > 0) {
        /* as if taken: it fades out with the next window */
        r->reset_ms = behind + left + spec->period_ms;
    }

    return r->status;
}


void
aigov_window_offer(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost)
{
    aigov_window_roll(w, spec, now);
    w->offered = aigov_limit_add32(w->offered, cost);
}


void
aigov_window_commit(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost)
{
    aigov_window_charge(w, spec, now, cost);
}


void
aigov_window_charge(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t cost)
{
    aigov_window_roll(w, spec, now);
    w->admitted = aigov_limit_add32(w->admitted, cost);
    w->unsynced = aigov_limit_add32(w->unsynced, cost);
}


/* gives back up to units of *admitted, the unsent part first */
static uint64_t
aigov_window_give_back(uint32_t *admitted, uint32_t *unsynced,
    uint64_t units)
{
    uint64_t  unsent;

    units = (units < *admitted) ? units : *admitted;
    *admitted -= (uint32_t) units;

    unsent = (units < *unsynced) ? units : *unsynced;
    *unsynced -= (uint32_t) unsent;

    /* in flight or in the fleet's count already */
    return units - unsent;
}


uint64_t
aigov_window_refund(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t window, uint64_t units)
{
    aigov_window_roll(w, spec, now);

    if (window == w->window) {
        return aigov_window_give_back(&w->admitted, &w->unsynced, units);
    }

    if (window + spec->period_ms == w->window) {
        return aigov_window_give_back(&w->prev_admitted, &w->prev_unsynced,
                                      units);
    }

    /* the estimate's window no longer counts */
    return 0;
}


int
aigov_window_take(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r)
{
    aigov_window_offer(w, spec, now, cost);

    if (aigov_window_check(w, spec, now, cost, r) == AIGOV_LIMIT_ALLOWED
        && cost > 0)
    {
        aigov_window_commit(w, spec, now, cost);
    }

    return r->status;
}


void
aigov_window_sync_begin(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, aigov_window_sync_t *msg)
{
    /*
     * Roll first: the reply should be the count of the window we are in,
     * even when this node admitted nothing lately.
     */
    aigov_window_roll(w, spec, now);

    msg->window = w->window;
    msg->admitted = w->unsynced;
    msg->prev_admitted = w->prev_unsynced;
    msg->offered = w->offered;
    msg->prev = (w->prev_unsynced > 0
                 || w->prev_reads < AIGOV_WINDOW_PREV_READS);
    msg->fresh = (w->prev_reads == 0);

    w->inflight = aigov_limit_add32(w->inflight, w->unsynced);
    w->unsynced = 0;
    w->prev_inflight = aigov_limit_add32(w->prev_inflight, w->prev_unsynced);
    w->prev_unsynced = 0;
    w->offered = 0;
}


static uint64_t
aigov_window_ewma(uint64_t old, uint64_t obs, uint64_t n)
{
    n = (n > UINT32_MAX) ? UINT32_MAX : n;

    if (obs >= old) {
        return old + aigov_limit_muldiv(obs - old, n, n + AIGOV_WINDOW_K,
                                        UINT32_MAX);
    }

    return old - aigov_limit_muldiv(old - obs, n, n + AIGOV_WINDOW_K,
                                    UINT32_MAX);
}


static uint32_t
aigov_window_sub32(uint32_t a, uint32_t b)
{
    return (a > b) ? a - b : 0;
}


static uint32_t
aigov_window_u32(uint64_t v)
{
    return (v > UINT32_MAX) ? UINT32_MAX : (uint32_t) v;
}


void
aigov_window_sync_done(aigov_window_t *w, const aigov_limit_spec_t *spec,
    const aigov_window_sync_t *msg, uint64_t now, uint64_t global_admitted,
    uint64_t global_prev, uint64_t global_offered)
{
    uint64_t  demand, obs, others, elapsed;

    if (msg->window == w->window) {
        w->inflight = aigov_window_sub32(w->inflight, msg->admitted);

        /* Redis's count includes msg->admitted and every other node's */
        w->global = aigov_window_u32(global_admitted);

        if (msg->prev) {
            w->prev_inflight = aigov_window_sub32(w->prev_inflight,
                                                  msg->prev_admitted);
            w->prev_global = aigov_window_u32(global_prev);

            if (w->prev_reads < AIGOV_WINDOW_PREV_READS) {
                w->prev_reads++;
            }
        }

    } else if (msg->window + spec->period_ms == w->window) {
        /* the window changed meanwhile: the message's is the previous */
        w->prev_inflight = aigov_window_sub32(w->prev_inflight,
                                              msg->admitted);
        w->prev_global = aigov_window_u32(global_admitted);
    }

    /*
     * Demand: between two of our syncs the fleet counter grew by
     * everyone's offered units, ours included.  A first sync, a counter
     * that was reset (expired in Redis), a clock that went back or an
     * interval in which we offered nothing tells nothing: the estimates
     * stay.  An idle node keeps its old share rather than dropping to 0,
     * so that it does not reject its first requests when traffic comes
     * back.
     */

    elapsed = (now > w->synced) ? now - w->synced : 0;

    if (w->samples != 0 && elapsed > 0 && msg->offered > 0
        && global_offered >= w->offered_seen
        && global_offered - w->offered_seen >= msg->offered)
    {
        demand = global_offered - w->offered_seen;

        obs = (uint64_t) msg->offered * AIGOV_WINDOW_SHARE_ONE / demand;
        obs = (obs == 0) ? 1 : obs;

        /* the other nodes' offered units, scaled to one window */
        others = aigov_limit_muldiv(demand - msg->offered, spec->period_ms,
                                    elapsed, UINT32_MAX);

        /*
         * A sample of few units is noisy (Poisson: +-1/sqrt(demand)), a
         * large one is not: move towards it by demand / (demand + K).
         */
        if (w->share == 0) {
            w->share = (uint32_t) obs;
            w->others = (uint32_t) others;

        } else {
            w->share = (uint32_t) aigov_window_ewma(w->share, obs, demand);
            w->others = (uint32_t) aigov_window_ewma(w->others, others,
                                                     demand);
        }
    }

    w->offered_seen = global_offered;
    w->synced = now;

    if (w->samples < UINT32_MAX) {
        w->samples++;
    }
}


void
aigov_window_sync_failed(aigov_window_t *w, const aigov_limit_spec_t *spec,
    const aigov_window_sync_t *msg)
{
    if (msg->window == w->window) {
        w->inflight = aigov_window_sub32(w->inflight, msg->admitted);
        w->unsynced = aigov_limit_add32(w->unsynced, msg->admitted);

        if (msg->prev) {
            w->prev_inflight = aigov_window_sub32(w->prev_inflight,
                                                  msg->prev_admitted);
            w->prev_unsynced = aigov_limit_add32(w->prev_unsynced,
                                                 msg->prev_admitted);
        }

    } else if (msg->window + spec->period_ms == w->window) {
        w->prev_inflight = aigov_window_sub32(w->prev_inflight,
                                              msg->admitted);
        w->prev_unsynced = aigov_limit_add32(w->prev_unsynced,
                                             msg->admitted);
    }

    w->offered = aigov_limit_add32(w->offered, msg->offered);
}


int
aigov_window_wants_sync(const aigov_window_t *w)
{
    return w->unsynced > 0 || w->offered > 0 || w->prev_unsynced > 0
           || w->prev_reads < AIGOV_WINDOW_PREV_READS;
}


static uint64_t
aigov_window_left(const aigov_limit_spec_t *spec, uint64_t now)
{
    return aigov_window_start(spec, now) + spec->period_ms - now;
}


int
aigov_window_admits(const aigov_limit_spec_t *spec, uint64_t now,
    uint64_t count, uint64_t prev, uint64_t cost)
{
    uint64_t  used;

    if (spec->period_ms == 0 || cost > spec->rate || count > spec->rate) {
        return 0;
    }

    used = count + aigov_window_carry(spec, prev,
                                      aigov_window_left(spec, now));

    return used <= spec->rate && cost <= spec->rate - used;
}


int
aigov_window_strict(const aigov_limit_spec_t *spec, uint64_t now,
    uint64_t count, uint64_t prev, uint32_t cost, int admitted,
    aigov_limit_result_t *r)
{
    uint64_t  left, used, wait;

    r->limit = spec->rate;
    r->retry_after_ms = 0;

    if (spec->rate == 0 || spec->period_ms == 0 || cost > spec->rate) {
        r->status = AIGOV_LIMIT_NEVER;
        r->allowed = 0;
        r->remaining = 0;
        r->reset_ms = 0;
        return r->status;
    }

    left = aigov_window_left(spec, now);
    used = count + aigov_window_carry(spec, prev, left);

    r->remaining = (used < spec->rate) ? spec->rate - used : 0;
    r->reset_ms = (count > 0) ? left + spec->period_ms
                  : (prev > 0) ? left : 0;

    if (!admitted) {
        r->status = AIGOV_LIMIT_REJECTED;
        r->allowed = 0;
        wait = aigov_window_wait(spec, count, prev, cost, spec->rate, left);
        r->retry_after_ms = (wait > 0) ? wait : 1;
        return r->status;
    }

    r->status = AIGOV_LIMIT_ALLOWED;
    r->allowed = 1;

    return r->status;
}


/* --- several limits ------------------------------------------------------- */

int
aigov_limit_pick(const aigov_limit_spec_t *specs,
    const aigov_limit_result_t *results, size_t n, uint32_t unit)
{
    int                          best, rank, best_rank;
    size_t                       i;
    const aigov_limit_result_t  *r, *b;

    best = -1;
    best_rank = 0;

    for (i = 0; i < n; i++) {
        if (unit != AIGOV_LIMIT_ANY && specs[i].unit != unit) {
            continue;
        }

        r = &results[i];

        rank = (r->status == AIGOV_LIMIT_NEVER) ? 3
               : (r->status == AIGOV_LIMIT_REJECTED) ? 2 : 1;

        if (best == -1 || rank > best_rank) {
            best = (int) i;
            best_rank = rank;
            continue;
        }

        if (rank < best_rank) {
            continue;
        }

        b = &results[best];

        if ((rank == 2 && r->retry_after_ms > b->retry_after_ms)
            || (rank != 2 && r->remaining < b->remaining))
        {
            best = (int) i;
        }
    }

    return best;
}


/* --- config --------------------------------------------------------------- */

/* Reads 1..10 digits as a uint32; returns the digits read, 0, or -1. */
static int
aigov_limit_digits(const char *p, const char *end, uint32_t *out)
{
    int       n;
    uint64_t  v;

    v = 0;
    n = 0;

    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t) (*p - '0');

        if (v > UINT32_MAX) {
            return -1;
        }

        p++;
        n++;
    }

    *out = (uint32_t) v;

    return n;
}


int
aigov_limit_parse_rate(const char *s, size_t len, aigov_limit_spec_t *spec,
    char *err, size_t errlen)
{
    int          n;
    uint32_t     rate, mult, unit, scale;
    uint64_t     period;
    const char  *p, *end;

    p = s;
    end = s + len;

    if (len == 0) {
        aigov_limit_err(err, errlen, "the rate is empty");
        return AIGOV_ERROR;
    }

    n = aigov_limit_digits(p, end, &rate);

    if (n < 0) {
        aigov_limit_err(err, errlen,
                        "the rate is too large (at most 4294967295)");
        return AIGOV_ERROR;
    }

    if (n == 0) {
        aigov_limit_err(err, errlen,
                        "the rate must start with a number, as in \"10r/s\"");
        return AIGOV_ERROR;
    }

    if (rate == 0) {
        aigov_limit_err(err, errlen, "the rate must be at least 1");
        return AIGOV_ERROR;
    }

    p += n;

    if (p < end && *p == 'r') {
        unit = AIGOV_LIMIT_REQUESTS;

    } else if (p < end && *p == 't') {
        unit = AIGOV_LIMIT_TOKENS;

    } else {
        aigov_limit_err(err, errlen,
                        "the rate needs \"r\" (requests) or \"t\" (tokens) "
                        "after the number, as in \"10r/s\" or \"1000t/m\"");
        return AIGOV_ERROR;
    }

    p++;

    if (p == end || *p != '/') {
        aigov_limit_err(err, errlen,
                        "the rate needs \"/\" and a period after the unit, "
                        "as in \"10r/s\"");
        return AIGOV_ERROR;
    }

    p++;

    n = aigov_limit_digits(p, end, &mult);

    if (n < 0) {
        aigov_limit_err(err, errlen, "the period is longer than 1d");
        return AIGOV_ERROR;
    }

    if (n == 0) {
        mult = 1;

    } else if (mult == 0) {
        aigov_limit_err(err, errlen, "the period must not be zero");
        return AIGOV_ERROR;
    }

    p += n;

    if (p == end) {
        aigov_limit_err(err, errlen,
                        "the period needs a unit: \"s\", \"m\", \"h\" "
                        "or \"d\"");
        return AIGOV_ERROR;
    }

    switch (*p) {
    case 's':
        scale = 1000;
        break;
    case 'm':
        scale = 60 * 1000;
        break;
    case 'h':
        scale = 60 * 60 * 1000;
        break;
    case 'd':
        scale = 24 * 60 * 60 * 1000;
        break;
    default:
        aigov_limit_err(err, errlen,
                        "the period's unit must be \"s\", \"m\", \"h\" "
                        "or \"d\"");
        return AIGOV_ERROR;
    }

    p++;

    if (p != end) {
        aigov_limit_err(err, errlen,
                        "unexpected characters after the period");
        return AIGOV_ERROR;
    }

    period = (uint64_t) mult * scale;

    if (period > AIGOV_LIMIT_PERIOD_MAX) {
        aigov_limit_err(err, errlen, "the period is longer than 1d");
        return AIGOV_ERROR;
    }

    spec->rate = rate;
    spec->period_ms = (uint32_t) period;
    spec->burst = rate;
    spec->unit = unit;

    return AIGOV_OK;
}


int
aigov_limit_parse_burst(const char *s, size_t len, uint32_t *burst,
    char *err, size_t errlen)
{
    int       n;
    uint32_t  v;

    if (len == 0) {
        aigov_limit_err(err, errlen, "the burst is empty");
        return AIGOV_ERROR;
    }

    n = aigov_limit_digits(s, s + len, &v);

    if (n < 0) {
        aigov_limit_err(err, errlen,
                        "the burst is too large (at most 4294967295)");
        return AIGOV_ERROR;
    }

    if (n == 0 || (size_t) n != len) {
        aigov_limit_err(err, errlen, "the burst must be a whole number");
        return AIGOV_ERROR;
    }

    if (v == 0) {
        aigov_limit_err(err, errlen, "the burst must be at least 1");
        return AIGOV_ERROR;
    }

    *burst = v;

    return AIGOV_OK;
}


int
aigov_limit_valid_name(const char *s, size_t len)
{
    size_t  i;
    char    c;

    if (len == 0 || len > AIGOV_LIMIT_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


/* --- headers -------------------------------------------------------------- */

#define aigov_limit_str(s)  { s, sizeof(s) - 1 }


/* An append-only writer into a caller buffer that remembers overflows. */
typedef struct {
    char    *p;
    size_t   len;
    size_t   size;
    int      fail;
} aigov_limit_out_t;


static void
aigov_limit_put(aigov_limit_out_t *o, const char *s, size_t n)
{
    if (o->fail || n >= o->size - o->len) {
        /* ">=": one byte always stays for the NUL */
        o->fail = 1;
        return;
    }

    memcpy(o->p + o->len, s, n);
    o->len += n;
}


static void
aigov_limit_put_uint(aigov_limit_out_t *o, uint64_t v)
{
    char    tmp[20];
    size_t  n;

    n = sizeof(tmp);

    do {
        tmp[--n] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);

    aigov_limit_put(o, tmp + n, sizeof(tmp) - n);
}


static size_t
aigov_limit_done(aigov_limit_out_t *o)
{
    if (o->size == 0) {
        return 0;
    }

    if (o->fail) {
        o->p[0] = '\0';
        return 0;
    }

    o->p[o->len] = '\0';

    return o->len;
}


static void
aigov_limit_out_init(aigov_limit_out_t *o, char *buf, size_t size)
{
    o->p = buf;
    o->len = 0;
    o->size = size;
    o->fail = (size == 0);
}


/* a Structured Field sf-string: printable ASCII, '"' and '\' escaped */
static void
aigov_limit_put_sf_string(aigov_limit_out_t *o, const aigov_str_t *s)
{
    size_t  i;
    char    c;

    aigov_limit_put(o, "\"", 1);

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') {
            break;
        }
    }

    if (i == s->len) {
        /* nothing to escape, as policy names mostly are: in one go */
        aigov_limit_put(o, s->data, s->len);
        aigov_limit_put(o, "\"", 1);
        return;
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (c < 0x20 || c > 0x7e) {
            o->fail = 1;
            return;
        }

        if (c == '"' || c == '\\') {
            aigov_limit_put(o, "\\", 1);
        }

        aigov_limit_put(o, &c, 1);
    }

    aigov_limit_put(o, "\"", 1);
}


static uint64_t
aigov_limit_seconds_up(uint64_t ms)
{
    return ms / 1000 + (ms % 1000 != 0);
}


size_t
aigov_limit_format_policy(char *buf, size_t size,
    const aigov_limit_policy_t *p, size_t n)
{
    size_t             i;
    uint64_t           w;
    aigov_limit_out_t  o;

    aigov_limit_out_init(&o, buf, size);

    if (n == 0) {
        o.fail = 1;     /* the field must be a non-empty list */
    }

    for (i = 0; i < n; i++) {
        if (i > 0) {
            aigov_limit_put(&o, ", ", 2);
        }

        aigov_limit_put_sf_string(&o, &p[i].name);

        aigov_limit_put(&o, ";q=", 3);
        aigov_limit_put_uint(&o, p[i].spec->rate);

        if (p[i].spec->unit == AIGOV_LIMIT_TOKENS) {
            aigov_limit_put(&o, ";qu=\"tokens\"", 12);
        }

        /* w: whole seconds, at least 1 */
        w = aigov_limit_seconds_up(p[i].spec->period_ms);
        aigov_limit_put(&o, ";w=", 3);
        aigov_limit_put_uint(&o, w ? w : 1);
    }

    return aigov_limit_done(&o);
}


size_t
aigov_limit_format_ratelimit(char *buf, size_t size,
    const aigov_limit_policy_t *p, size_t n)
{
    size_t                       i;
    uint64_t                     t;
    aigov_limit_out_t            o;
    const aigov_limit_result_t  *r;

    aigov_limit_out_init(&o, buf, size);

    if (n == 0) {
        o.fail = 1;
    }

    for (i = 0; i < n; i++) {
        r = p[i].result;

        if (i > 0) {
            aigov_limit_put(&o, ", ", 2);
        }

        aigov_limit_put_sf_string(&o, &p[i].name);

        aigov_limit_put(&o, ";r=", 3);
        aigov_limit_put_uint(&o, r->remaining);

        switch (r->status) {

        case AIGOV_LIMIT_ALLOWED:
            t = aigov_limit_seconds_up(r->reset_ms);
            break;

        case AIGOV_LIMIT_REJECTED:
            /* when it may be retried, as Retry-After says */
            t = aigov_limit_seconds_up(r->retry_after_ms);
            t = t ? t : 1;
            break;

        default:
            /* never: no time helps, leave the optional t out */
            continue;
        }

        aigov_limit_put(&o, ";t=", 3);
        aigov_limit_put_uint(&o, t);
    }

    return aigov_limit_done(&o);
}


static void
aigov_limit_put_duration(aigov_limit_out_t *o, uint64_t ms)
{
    char      frac[4];
    size_t    n;
    uint64_t  h, m, s, f;

    if (ms == 0) {
        aigov_limit_put(o, "0s", 2);
        return;
    }

    if (ms < 1000) {
        aigov_limit_put_uint(o, ms);
        aigov_limit_put(o, "ms", 2);
        return;
    }

    h = ms / 3600000;
    m = ms / 60000 % 60;
    s = ms / 1000 % 60;
    f = ms % 1000;

    if (h > 0) {
        aigov_limit_put_uint(o, h);
        aigov_limit_put(o, "h", 1);
    }

    if (h > 0 || m > 0) {
        aigov_limit_put_uint(o, m);
        aigov_limit_put(o, "m", 1);
    }

    aigov_limit_put_uint(o, s);

    if (f > 0) {
        /* Go trims trailing zeros of the fraction: 1.5s, 1.05s, 1.005s */
        frac[0] = '.';
        frac[1] = (char) ('0' + f / 100);
        frac[2] = (char) ('0' + f / 10 % 10);
        frac[3] = (char) ('0' + f % 10);

        n = 4;
        while (frac[n - 1] == '0') {
            n--;
        }

        aigov_limit_put(o, frac, n);
    }

    aigov_limit_put(o, "s", 1);
}


size_t
aigov_limit_format_duration(char *buf, size_t size, uint64_t ms)
{
    aigov_limit_out_t  o;

    aigov_limit_out_init(&o, buf, size);
    aigov_limit_put_duration(&o, ms);

    return aigov_limit_done(&o);
}


size_t
aigov_limit_format_retry_after(char *buf, size_t size, uint64_t ms)
{
    uint64_t  s;

    s = aigov_limit_seconds_up(ms);

    return aigov_limit_format_uint(buf, size, s ? s : 1);
}


size_t
aigov_limit_format_uint(char *buf, size_t size, uint64_t v)
{
    aigov_limit_out_t  o;

    aigov_limit_out_init(&o, buf, size);
    aigov_limit_put_uint(&o, v);

    return aigov_limit_done(&o);
}


static const aigov_str_t  aigov_limit_openai_names[2][3] = {
    { aigov_limit_str("x-ratelimit-limit-requests"),
      aigov_limit_str("x-ratelimit-remaining-requests"),
      aigov_limit_str("x-ratelimit-reset-requests") },
    { aigov_limit_str("x-ratelimit-limit-tokens"),
      aigov_limit_str("x-ratelimit-remaining-tokens"),
      aigov_limit_str("x-ratelimit-reset-tokens") }
};


size_t
aigov_limit_format_openai(char *buf, size_t size,
    const aigov_limit_spec_t *spec, const aigov_limit_result_t *r,
    aigov_limit_header_t h[3])
{
    int                i, tokens;
    size_t             start[3];
    aigov_limit_out_t  o;

    tokens = (spec->unit == AIGOV_LIMIT_TOKENS);

    aigov_limit_out_init(&o, buf, size);

    start[0] = o.len;
    aigov_limit_put_uint(&o, spec->rate);

    start[1] = o.len;
    aigov_limit_put_uint(&o, r->remaining);

    start[2] = o.len;
    aigov_limit_put_duration(&o, r->reset_ms);

    if (aigov_limit_done(&o) == 0) {
        return 0;
    }

    for (i = 0; i < 3; i++) {
        h[i].name = aigov_limit_openai_names[tokens][i];
        h[i].value.data = buf + start[i];
        h[i].value.len = ((i < 2) ? start[i + 1] : o.len) - start[i];
    }

    return o.len;
}


/* --- usage ---------------------------------------------------------------- */

/* a JSON integer >= 0, or -1 */
static int64_t
aigov_limit_count(json_t *obj, const char *key)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return -1;
    }

    return (int64_t) json_integer_value(v);
}


static int
aigov_limit_pair(json_t *u, const char *a, const char *b, uint64_t *total)
{
    int64_t  x, y;

    x = aigov_limit_count(u, a);
    y = aigov_limit_count(u, b);

    if (x < 0 && y < 0) {
        return AIGOV_DECLINED;
    }

    *total = (uint64_t) (x < 0 ? 0 : x) + (uint64_t) (y < 0 ? 0 : y);

    return AIGOV_OK;
}


int
aigov_limit_usage_tokens(const char *json, size_t len, uint64_t *total)
{
    int           rc;
    json_t       *root, *u;
    int64_t       t;
    json_error_t  jerr;

    root = json_loadb(json, len, 0, &jerr);
    if (root == NULL) {
        return AIGOV_ERROR;
    }

    u = json_object_get(root, "usage");

    if (!json_is_object(u)) {
        u = json_object_get(json_object_get(root, "response"), "usage");
    }

    rc = AIGOV_DECLINED;

    if (json_is_object(u)) {
        t = aigov_limit_count(u, "total_tokens");

        if (t >= 0) {
            *total = (uint64_t) t;
            rc = AIGOV_OK;

        } else {
            rc = aigov_limit_pair(u, "prompt_tokens", "completion_tokens",
                                  total);
            if (rc != AIGOV_OK) {
                rc = aigov_limit_pair(u, "input_tokens", "output_tokens",
                                      total);
            }
        }
    }

    json_decref(root);

    return rc;
}


/*
 * Two scanners read the usage of a response body without building a
 * document; both keep only the counts of the top-level "usage" and of
 * "response"."usage" (the Responses API's response.completed event).
 * jansson costs about 40000 instructions for a 200-byte chat completion
 * (an allocation per value).
 *
 * aigov_limit_usage_scan(): the answer of aigov_limit_usage_tokens() for
 * any input.  A recursive descent over the text that validates it as it
 * goes; about 2700 instructions for that completion.  Whatever it is not
 * sure to judge as jansson would -- escapes in the keys it compares,
 * \u0000 and lone surrogates, bytes that are not well-formed UTF-8,
 * control characters, integers of 19 digits or more, reals that might
 * overflow, nesting deeper than 64, anything that is not JSON -- it hands
 * to aigov_limit_usage_tokens().  So the results are the same for every
 * input (tests/test_limit.c, tests/fuzz/fuzz_limit_usage.c).
 *
 * aigov_limit_usage_fast(), further down: a structural scan that checks
 * only the usage objects and follows the rest by its quotes and brackets;
 * the same answer for every body jansson accepts, for about half the cost
 * of aigov_limit_usage_scan() and far less per byte of long strings.
 */

#define AIGOV_SCAN_DEPTH    64

#define AIGOV_SCAN_OTHER    0   /* what an object is to the scanner */
#define AIGOV_SCAN_ROOT     1
#define AIGOV_SCAN_RESPONSE 2
#define AIGOV_SCAN_USAGE    3

#define AIGOV_SCAN_INT      1   /* what a value was */
#define AIGOV_SCAN_VALUE    2

#define AIGOV_SCAN_FIELDS   5

typedef struct {
    const char  *p;
    const char  *end;
    int          unsure;
    int          usage;         /* the last top-level "usage" is an object */
    int          response;      /* the last "response" is an object */
    int          response_usage;    /* and its last "usage" too */
    int64_t      u[AIGOV_SCAN_FIELDS];
    int64_t      ru[AIGOV_SCAN_FIELDS];
} aigov_limit_scan_t;


uint64_t  aigov_limit_scan_fallbacks;


static const aigov_str_t  aigov_limit_scan_fields[AIGOV_SCAN_FIELDS] = {
    aigov_limit_str("total_tokens"), aigov_limit_str("prompt_tokens"),
    aigov_limit_str("completion_tokens"), aigov_limit_str("input_tokens"),
    aigov_limit_str("output_tokens")
};


static int aigov_limit_scan_value(aigov_limit_scan_t *s, int depth,
    int what, int64_t *counts, int64_t *num);


/* the first byte at or after p that is not JSON whitespace, or end */
static inline const char *
aigov_limit_skip_ws(const char *p, const char *end)
{
    /* '\t', '\n', '\r' and ' ' are all <= ' ': one test for most bytes */
    while (p < end && (unsigned char) *p <= ' '
           && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    {
        p++;
    }

    return p;
}


static inline void
aigov_limit_scan_ws(aigov_limit_scan_t *s)
{
    s->p = aigov_limit_skip_ws(s->p, s->end);
}


static int
aigov_limit_scan_hex(const char *p)
{
    int  i, v;
    char c;

    v = 0;

    for (i = 0; i < 4; i++) {
        c = p[i];
        v <<= 4;

        if (c >= '0' && c <= '9') {
            v |= c - '0';

        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;

        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;

        } else {
            return -1;
        }
    }

    return v;
}


/*
 * Eight bytes at a time (SWAR): x is eight bytes of text loaded with
 * memcpy().  aigov_limit_haszero(x) has the high bit set of each byte of
 * x that is zero, and maybe of some bytes after one that is, never
 * before: it is not zero exactly when x has a zero byte, and its lowest
 * bit set, in a little-endian load, is that of the first one.
 */
#define aigov_limit_ones    0x0101010101010101ULL
#define aigov_limit_highs   0x8080808080808080ULL

#define aigov_limit_haszero(x)                                               \
    (((x) - aigov_limit_ones) & ~(x) & aigov_limit_highs)

/* bytes that are '"' or '\\' */
#define aigov_limit_quote_or_bs(x)                                           \
    (aigov_limit_haszero((x) ^ (aigov_limit_ones * '"'))                     \
     | aigov_limit_haszero((x) ^ (aigov_limit_ones * '\\')))

/* bytes that are not plain: below 0x20, above 0x7f, '"' or '\\' */
#define aigov_limit_not_plain(x)                                             \
    (((((x) - aigov_limit_ones * 0x20) | (x)) & aigov_limit_highs)          \
     | aigov_limit_quote_or_bs(x))

/* little-endian loads: the first byte of the text is the lowest */
#if (defined __GNUC__ && defined __BYTE_ORDER__                               \
     && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
#define AIGOV_SCAN_CTZ  1
#else
#define AIGOV_SCAN_CTZ  0
#endif


/* bytes that need no look inside a string: 0x20..0x7f but '"' and '\\' */
static const unsigned char  aigov_limit_scan_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x10 */
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,     /* 0x20 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,     /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,     /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,     /* 0x50 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,     /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1      /* 0x70 */
    /* 0x80..0xff: 0, checked as UTF-8 */
};


/* A string at s->p (its opening quote).  *escaped: it had an escape. */
static int
aigov_limit_scan_string(aigov_limit_scan_t *s, const char **str,
    size_t *len, int *escaped)
{
    int                   n, u;
    uint64_t              x, m;
    const unsigned char  *p, *end, *start;

    p = (const unsigned char *) s->p + 1;
    end = (const unsigned char *) s->end;
    start = p;
    *escaped = 0;

    while (p < end) {

        /* the bulk of a response: printable ASCII, eight bytes a turn */
        while (end - p >= 8) {
            memcpy(&x, p, 8);
            m = aigov_limit_not_plain(x);

            if (m) {
#if (AIGOV_SCAN_CTZ)
                p += __builtin_ctzll(m) >> 3;
#endif
                break;
            }

            p += 8;
        }

        while (p < end && aigov_limit_scan_plain[*p]) {
            p++;
        }

        if (p == end) {
            goto unsure;
        }

        if (*p == '"') {
            *str = (const char *) start;
            *len = (size_t) (p - start);
            s->p = (const char *) p + 1;
            return 0;
        }

        if (*p == '\\') {
            *escaped = 1;

            if (p + 1 >= end) {
                break;
            }

            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                p += 2;
                continue;

            case 'u':
                if (end - p < 6) {
                    goto unsure;
                }

                u = aigov_limit_scan_hex((const char *) p + 2);

                if (u <= 0 || (u >= 0xd800 && u <= 0xdfff)) {
                    /* invalid, NUL, surrogates: jansson judges */
                    goto unsure;
                }

                p += 6;
                continue;

            default:
                goto unsure;
            }
        }

        if (*p < 0x20) {
            goto unsure;
        }

        if (*p < 0x80) {
            p++;
            continue;
        }

        /* well-formed UTF-8 only (RFC 3629, table 3-7 of Unicode) */

        if (*p >= 0xc2 && *p <= 0xdf) {
            n = 2;

        } else if (*p >= 0xe0 && *p <= 0xef) {
            n = 3;

        } else if (*p >= 0xf0 && *p <= 0xf4) {
            n = 4;

        } else {
            goto unsure;
        }

        if (end - p < n) {
            goto unsure;
        }

        if ((*p == 0xe0 && p[1] < 0xa0) || (*p == 0xed && p[1] > 0x9f)
            || (*p == 0xf0 && p[1] < 0x90) || (*p == 0xf4 && p[1] > 0x8f))
        {
            goto unsure;
        }

        for (u = 1; u < n; u++) {
            if (p[u] < 0x80 || p[u] > 0xbf) {
                goto unsure;
            }
        }

        p += n;
    }

unsure:

    s->unsure = 1;
    return -1;
}


/* A number: AIGOV_SCAN_INT with *num for an integer that surely fits. */
static int
aigov_limit_scan_number(aigov_limit_scan_t *s, int64_t *num)
{
    int          neg, digits, frac, exp;
    int64_t      v;
    const char  *p, *end;

    p = s->p;
    end = s->end;
    neg = 0;
    digits = 0;
    frac = 0;
    exp = 0;
    v = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    if (p < end && *p == '0') {
        p++;
        digits = 1;

    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 18) {
                v = v * 10 + (*p - '0');
            }

            digits++;
            p++;
        }
    }

    if (digits == 0) {
        goto unsure;
    }

    if (p < end && *p == '.') {
        p++;

        while (p < end && *p >= '0' && *p <= '9') {
            frac++;
            p++;
        }

        if (frac == 0) {
            goto unsure;
        }
    }

    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;

        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }

        while (p < end && *p >= '0' && *p <= '9') {
            exp++;
            p++;
        }

        if (exp == 0) {
            goto unsure;
        }
    }

    if (digits > 18 || exp > 2 || ((frac || exp) && digits + frac > 30)) {
        /* overflow: jansson refuses a too big integer or real */
        goto unsure;
    }

    s->p = p;

    if (frac || exp) {
        return AIGOV_SCAN_VALUE;
    }

    *num = neg ? -v : v;

    return AIGOV_SCAN_INT;

unsure:

    s->unsure = 1;
    return -1;
}


static int
aigov_limit_scan_literal(aigov_limit_scan_t *s, const char *lit, size_t n)
{
    if ((size_t) (s->end - s->p) < n || memcmp(s->p, lit, n) != 0) {
        s->unsure = 1;
        return -1;
    }

    s->p += n;

    return AIGOV_SCAN_VALUE;
}


/*
 * After a member or an element: the container closes (AIGOV_SCAN_VALUE),
 * goes on after a comma (0), or is not JSON (-1).
 */
static inline int
aigov_limit_scan_next(aigov_limit_scan_t *s, char close)
{
    aigov_limit_scan_ws(s);

    if (s->p < s->end && *s->p == close) {
        s->p++;
        return AIGOV_SCAN_VALUE;
    }

    if (s->p >= s->end || *s->p != ',') {
        s->unsure = 1;
        return -1;
    }

    s->p++;
    aigov_limit_scan_ws(s);

    return 0;
}


/*
 * A key of a usage object that is one of the fields, written plainly:
 * the field, with s->p after the key; else -1, and the key is left to
 * aigov_limit_scan_string().  Saves checking text that is known.  The
 * names, with their closing quote, are those of aigov_limit_scan_fields.
 */
static int
aigov_limit_scan_field(aigov_limit_scan_t *s, const char **key,
    size_t *klen)
{
    int          i;
    size_t       n;
    const char  *p;

    /* '"', the shortest field and '"' */
    if (s->end - s->p < 14 || *s->p != '"') {
        return -1;
    }

    p = s->p + 1;
    n = (size_t) (s->end - p);

#define aigov_limit_scan_is(lit)                                             \
    (n >= sizeof(lit) - 1 && memcmp(p, lit, sizeof(lit) - 1) == 0)

    switch (*p) {
    case 't':
        i = aigov_limit_scan_is("total_tokens\"") ? 0 : -1;
        break;
    case 'p':
        i = aigov_limit_scan_is("prompt_tokens\"") ? 1 : -1;
        break;
    case 'c':
        i = aigov_limit_scan_is("completion_tokens\"") ? 2 : -1;
        break;
    case 'i':
        i = aigov_limit_scan_is("input_tokens\"") ? 3 : -1;
        break;
    case 'o':
        i = aigov_limit_scan_is("output_tokens\"") ? 4 : -1;
        break;
    default:
        i = -1;
    }

#undef aigov_limit_scan_is

    if (i < 0) {
        return -1;
    }

    *key = p;
    *klen = aigov_limit_scan_fields[i].len;
    s->p = p + *klen + 1;

    return i;
}


static int
aigov_limit_scan_object(aigov_limit_scan_t *s, int depth, int what,
    int64_t *counts)
{
    int          i, rc, escaped, child, field;
    size_t       klen;
    int64_t      num, *cc;
    const char  *key;

    s->p++;     /* '{' */
    aigov_limit_scan_ws(s);

    if (s->p < s->end && *s->p == '}') {
        s->p++;
        return AIGOV_SCAN_VALUE;
    }

    for ( ;; ) {
        field = (what == AIGOV_SCAN_USAGE)
                ? aigov_limit_scan_field(s, &key, &klen) : -1;

        if (field >= 0) {
            /* a known plain key */

        } else if (s->p >= s->end || *s->p != '"'
                   || aigov_limit_scan_string(s, &key, &klen, &escaped) != 0)
        {
            s->unsure = 1;
            return -1;

        } else if (escaped && what != AIGOV_SCAN_OTHER) {
            /* "us\u0061ge" is "usage": not ours to decode */
            s->unsure = 1;
            return -1;
        }

        if (s->p >= s->end || *s->p != ':') {
            aigov_limit_scan_ws(s);

            if (s->p >= s->end || *s->p != ':') {
                s->unsure = 1;
                return -1;
            }
        }

        s->p++;
        aigov_limit_scan_ws(s);

        if (s->p >= s->end) {
            s->unsure = 1;
            return -1;
        }

        child = AIGOV_SCAN_OTHER;
        cc = NULL;

        if (what == AIGOV_SCAN_ROOT && klen == 5
            && memcmp(key, "usage", 5) == 0)
        {
            /* the last one wins, as in jansson */
            s->usage = (*s->p == '{');

            if (s->usage) {
                child = AIGOV_SCAN_USAGE;
                cc = s->u;
            }

        } else if (what == AIGOV_SCAN_ROOT && klen == 8
                   && memcmp(key, "response", 8) == 0)
        {
            s->response = (*s->p == '{');
            s->response_usage = 0;

            if (s->response) {
                child = AIGOV_SCAN_RESPONSE;
            }

        } else if (what == AIGOV_SCAN_RESPONSE && klen == 5
                   && memcmp(key, "usage", 5) == 0)
        {
            s->response_usage = (*s->p == '{');

            if (s->response_usage) {
                child = AIGOV_SCAN_USAGE;
                cc = s->ru;
            }
        }

        if (cc) {
            for (i = 0; i < AIGOV_SCAN_FIELDS; i++) {
                cc[i] = -1;
            }
        }

        if (depth < AIGOV_SCAN_DEPTH
            && ((*s->p >= '0' && *s->p <= '9') || *s->p == '-'))
        {
            /* what aigov_limit_scan_value() does for it, one call less */
            rc = aigov_limit_scan_number(s, &num);

        } else {
            rc = aigov_limit_scan_value(s, depth + 1, child, cc, &num);
        }

        if (rc < 0) {
            return -1;
        }

        if (what == AIGOV_SCAN_USAGE) {
            for (i = 0; field < 0 && i < AIGOV_SCAN_FIELDS; i++) {
                if (aigov_limit_scan_fields[i].len == klen
                    && memcmp(aigov_limit_scan_fields[i].data, key, klen) == 0)
                {
                    field = i;
                }
            }

            if (field >= 0) {
                counts[field] = (rc == AIGOV_SCAN_INT && num >= 0) ? num : -1;
            }
        }

        rc = aigov_limit_scan_next(s, '}');

        if (rc != 0) {
            return rc;
        }
    }
}


static int
aigov_limit_scan_array(aigov_limit_scan_t *s, int depth)
{
    int      rc;
    int64_t  num;

    s->p++;     /* '[' */
    aigov_limit_scan_ws(s);

    if (s->p < s->end && *s->p == ']') {
        s->p++;
        return AIGOV_SCAN_VALUE;
    }

    for ( ;; ) {
        if (aigov_limit_scan_value(s, depth + 1, AIGOV_SCAN_OTHER, NULL, &num)
            < 0)
        {
            return -1;
        }

        rc = aigov_limit_scan_next(s, ']');

        if (rc != 0) {
            return rc;
        }
    }
}


static int
aigov_limit_scan_value(aigov_limit_scan_t *s, int depth, int what,
    int64_t *counts, int64_t *num)
{
    int          escaped;
    size_t       len;
    const char  *str;

    if (depth > AIGOV_SCAN_DEPTH || s->p >= s->end) {
        s->unsure = 1;
        return -1;
    }

    switch (*s->p) {

    case '{':
        return aigov_limit_scan_object(s, depth, what, counts);

    case '[':
        return aigov_limit_scan_array(s, depth);

    case '"':
        return aigov_limit_scan_string(s, &str, &len, &escaped) == 0
               ? AIGOV_SCAN_VALUE : -1;

    case 't':
        return aigov_limit_scan_literal(s, "true", 4);

    case 'f':
        return aigov_limit_scan_literal(s, "false", 5);

    case 'n':
        return aigov_limit_scan_literal(s, "null", 4);

    default:
        if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) {
            return aigov_limit_scan_number(s, num);
        }

        s->unsure = 1;
        return -1;
    }
}


/* What the counts the scan kept say, as aigov_limit_usage_tokens() would. */
static int
aigov_limit_scan_result(aigov_limit_scan_t *s, uint64_t *total)
{
    int64_t  *c;

    if (s->usage) {
        c = s->u;

    } else if (s->response && s->response_usage) {
        c = s->ru;

    } else {
        return AIGOV_DECLINED;
    }

    if (c[0] >= 0) {
        *total = (uint64_t) c[0];
        return AIGOV_OK;
    }

    if (c[1] >= 0 || c[2] >= 0) {
        *total = (uint64_t) (c[1] < 0 ? 0 : c[1])
                 + (uint64_t) (c[2] < 0 ? 0 : c[2]);
        return AIGOV_OK;
    }

    if (c[3] >= 0 || c[4] >= 0) {
        *total = (uint64_t) (c[3] < 0 ? 0 : c[3])
                 + (uint64_t) (c[4] < 0 ? 0 : c[4]);
        return AIGOV_OK;
    }

    return AIGOV_DECLINED;
}


int
aigov_limit_usage_scan(const char *json, size_t len, uint64_t *total)
{
    int                  rc;
    int64_t              num;
    aigov_limit_scan_t   s;

    memset(&s, 0, sizeof(aigov_limit_scan_t));
    s.p = json;
    s.end = json + len;

    aigov_limit_scan_ws(&s);

    if (s.p < s.end && (*s.p == '{' || *s.p == '[')) {
        rc = aigov_limit_scan_value(&s, 1, AIGOV_SCAN_ROOT, NULL, &num);

        if (rc >= 0) {
            aigov_limit_scan_ws(&s);

            if (s.p != s.end) {
                s.unsure = 1;   /* jansson: "end of file expected" */
            }
        }

    } else {
        s.unsure = 1;
    }

    if (s.unsure) {
        aigov_limit_scan_fallbacks++;
        return aigov_limit_usage_tokens(json, len, total);
    }

    return aigov_limit_scan_result(&s, total);
}


/*
 * aigov_limit_usage_fast(): the same counts for much less.  Most of a
 * response body is strings (the content) that the usage does not depend
 * on, so this scan does not validate the body: outside strings it only
 * follows the nesting ({ and [ in, } and ] out, a class table), inside
 * them it only looks for the closing quote, eight bytes at a time, and it
 * compares only the keys of the root object and of the root's "response"
 * object.  The value of a "usage" key there is read by
 * aigov_limit_scan_object() above, exactly, and so is validated; nothing
 * else is.
 *
 * For a body that jansson accepts, a key is a string followed by ':',
 * a quote ends a string unless an odd run of backslashes stands before
 * it, and the depth is that of the document: the answer is the same.
 * What it is not sure of -- the root is not an object, an escaped key
 * that might decode to "usage" or "response", a usage object the exact
 * scanner is unsure of, a string or the root that does not end, text
 * after the root -- goes to aigov_limit_usage_scan().  A malformed body
 * that still carries a well-formed top-level usage is counted: those
 * tokens were spent.
 */

#define AIGOV_FAST_SKIP     0   /* what a byte outside strings is */
#define AIGOV_FAST_QUOTE    1
#define AIGOV_FAST_OPEN     2
#define AIGOV_FAST_CLOSE    3

static const unsigned char  aigov_limit_fast_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x00 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x20 '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x30 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0,     /* 0x50 '[' ']' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0      /* 0x70 '{' '}' */
    /* 0x80..0xff: 0 */
};


uint64_t  aigov_limit_fast_fallbacks;


/*
 * The same for a string whose keys are not compared: only quotes are
 * looked for, and a quote ends the string unless it follows an odd run
 * of backslashes (each backslash escapes the next byte: pairs are
 * escaped backslashes).  The run stops at the opening quote at worst.
 */
static const char *
aigov_limit_fast_skip(const char *p, const char *end)
{
    uint64_t     x, y, m;
    const char  *b;

    for ( ;; ) {

        /* most strings end in their first eight bytes; long ones: 16 a turn */

        m = 0;

        if (end - p >= 8) {
            memcpy(&x, p, 8);
            m = aigov_limit_haszero(x ^ (aigov_limit_ones * '"'));

            if (m == 0) {
                p += 8;

                while (end - p >= 16) {
                    memcpy(&x, p, 8);
                    memcpy(&y, p + 8, 8);

                    m = aigov_limit_haszero(x ^ (aigov_limit_ones * '"'));
                    y = aigov_limit_haszero(y ^ (aigov_limit_ones * '"'));

                    if (m | y) {
                        if (m == 0) {
                            p += 8;
                            m = y;
                        }

                        break;
                    }

                    p += 16;
                }
            }
        }

#if (AIGOV_SCAN_CTZ)
        if (m) {
            /* the lowest bit set is exact: the first quote */
            p += __builtin_ctzll(m) >> 3;
            goto found;
        }
#endif

        /* the rest, or the eight bytes with the quote */

        while (p < end && *p != '"') {
            p++;
        }

        if (p == end) {
            return NULL;
        }

#if (AIGOV_SCAN_CTZ)
    found:
#endif

        for (b = p; b[-1] == '\\'; b--) { /* void */ }

        if (((p - b) & 1) == 0) {
            return p;
        }

        p++;
    }
}


int
aigov_limit_usage_fast(const char *json, size_t len, uint64_t *total)
{
    int                  i, c;
    size_t               depth, kdepth, klen;
    int64_t             *cc;
    const char          *p, *end, *key, *q;
    aigov_limit_scan_t   s;

    end = json + len;
    p = aigov_limit_skip_ws(json, end);

    if (p == end || *p != '{') {
        goto fallback;
    }

    s.end = end;
    s.unsure = 0;
    s.usage = 0;
    s.response = 0;
    s.response_usage = 0;

    p++;
    depth = 1;
    kdepth = 1;     /* keys are compared at depth <= kdepth: 2 in "response" */

    if (p == end) {
        goto fallback;
    }

    for ( ;; ) {

        /* p < end */

        while (aigov_limit_fast_class[(unsigned char) *p] == AIGOV_FAST_SKIP) {
            if (++p == end) {
                goto fallback;      /* the root does not end */
            }
        }

        c = aigov_limit_fast_class[(unsigned char) *p++];

        if (c != AIGOV_FAST_QUOTE) {

            if (c == AIGOV_FAST_OPEN) {
                depth++;

            } else if (--depth == 0) {
                goto done;

            } else if (depth == 1) {
                kdepth = 1;
            }

            if (p == end) {
                goto fallback;
            }

            continue;
        }

        key = p;
        q = aigov_limit_fast_skip(key, end);

        if (q == NULL) {
            goto fallback;
        }

        p = q + 1;

        if (p == end) {
            goto fallback;
        }

        if (depth > kdepth) {
            continue;
        }

        /* a key is a string followed by ':' */

        if (*p != ':') {
            p = aigov_limit_skip_ws(p, end);

            if (p == end) {
                goto fallback;
            }

            if (*p != ':') {
                continue;
            }
        }

        p = aigov_limit_skip_ws(p + 1, end);

        if (p == end) {
            goto fallback;
        }

        klen = (size_t) (q - key);
        cc = NULL;

        if (klen == 5 && memcmp(key, "usage", 5) == 0) {

            /* the last one wins, as in jansson */

            if (depth == 1) {
                s.usage = (*p == '{');
                cc = s.usage ? s.u : NULL;

            } else {
                s.response_usage = (*p == '{');
                cc = s.response_usage ? s.ru : NULL;
            }

        } else if (klen == 8 && depth == 1
                   && memcmp(key, "response", 8) == 0)
        {
            s.response = (*p == '{');
            s.response_usage = 0;

            if (s.response) {
                /* enter it here: this is the object kdepth stands for */
                depth = 2;
                kdepth = 2;
                p++;
            }

        } else if ((*key == 'u' || *key == 'r' || *key == '\\')
                   && memchr(key, '\\', klen) != NULL)
        {
            /*
             * "us\u0061ge" is "usage": not ours to decode.  A key that
             * decodes to "usage" or "response" starts with its letter or
             * with a backslash; other keys, escaped or not, do not matter.
             */
            goto fallback;
        }

        if (cc == NULL) {

            if (p == end) {
                goto fallback;
            }

            continue;
        }

        /* the usage object itself: exactly, as aigov_limit_usage_scan() */

        for (i = 0; i < AIGOV_SCAN_FIELDS; i++) {
            cc[i] = -1;
        }

        s.p = p;

        if (aigov_limit_scan_object(&s, (int) depth + 1, AIGOV_SCAN_USAGE, cc)
            < 0)
        {
            goto fallback;
        }

        p = s.p;

        if (p == end) {
            goto fallback;
        }
    }

done:

    /* only whitespace after the root, as jansson wants */

    if (aigov_limit_skip_ws(p, end) != end) {
        goto fallback;
    }

    return aigov_limit_scan_result(&s, total);

fallback:

    aigov_limit_fast_fallbacks++;

    return aigov_limit_usage_scan(json, len, total);
}


/* scanner states */
#define AIGOV_SSE_START     0   /* at the start of a line */
#define AIGOV_SSE_NAME      1   /* in a field name */
#define AIGOV_SSE_SPACE     2   /* after "data:", one space may follow */
#define AIGOV_SSE_VALUE     3   /* in the value of a data line */
#define AIGOV_SSE_SKIP      4   /* in a comment or another field */


void
aigov_limit_sse_init(aigov_limit_sse_t *s, char *buf, size_t size)
{
    memset(s, 0, sizeof(aigov_limit_sse_t));

    s->buf = buf;
    s->size = size;
}


static void
aigov_limit_sse_append(aigov_limit_sse_t *s, const char *p, size_t n)
{
    if (s->overflow) {
        return;
    }

    if (n > s->size - s->len) {
        s->overflow = 1;
        return;
    }

    memcpy(s->buf + s->len, p, n);
    s->len += n;
}


/*
 * Is there a "usage" key with an object value?  Saves a scan of every
 * chunk: OpenAI sends "usage":null in all but the last.
 */
static int
aigov_limit_sse_has_usage(const char *p, size_t len)
{
    const char  *end, *k;

    end = p + len;

    while ((size_t) (end - p) >= 7) {
        k = memchr(p, '"', (size_t) (end - p) - 6);
        if (k == NULL) {
            return 0;
        }

        p = k + 1;

        if (memcmp(k, "\"usage\"", 7) != 0) {
            continue;
        }

        k += 7;

        while (k < end && (*k == ' ' || *k == '\t' || *k == '\n'
                           || *k == '\r' || *k == ':'))
        {
            k++;
        }

        if (k < end && *k == '{') {
            return 1;
        }
    }

    return 0;
}


static void
aigov_limit_sse_dispatch(aigov_limit_sse_t *s)
{
    uint64_t  t;

    if (!s->has_data) {
        /* a blank line without data lines is no event */
        return;
    }

    s->events++;

    if (s->overflow) {
        s->skipped++;

    } else {
        /* the data of the last line ends in a LF that is not part of it */
        if (s->len > 0) {
            s->len--;
        }

        if (aigov_limit_sse_has_usage(s->buf, s->len)
            && aigov_limit_usage_fast(s->buf, s->len, &t) == AIGOV_OK)
        {
            s->total = t;
            s->found = 1;
        }
    }

    s->len = 0;
    s->has_data = 0;
    s->overflow = 0;
}


/* a line ended: in state st */
static void
aigov_limit_sse_eol(aigov_limit_sse_t *s)
{
    switch (s->state) {

    case AIGOV_SSE_START:
        aigov_limit_sse_dispatch(s);
        break;

    case AIGOV_SSE_NAME:
        /* "data" alone on a line is a data line with an empty value */
        if (s->name_len == 4 && memcmp(s->name, "data", 4) == 0) {
            s->has_data = 1;
            aigov_limit_sse_append(s, "\n", 1);
        }
        break;

    case AIGOV_SSE_SPACE:
    case AIGOV_SSE_VALUE:
        s->has_data = 1;
        aigov_limit_sse_append(s, "\n", 1);
        break;

    default:
        break;
    }

    s->state = AIGOV_SSE_START;
}


void
aigov_limit_sse_feed(aigov_limit_sse_t *s, const char *data, size_t len)
{
    char         c;
    const char  *p, *end, *stop;

    p = data;
    end = data + len;

    while (p < end) {
        c = *p;

        if (s->cr) {
            s->cr = 0;

            if (c == '\n') {
                /* the LF of a CRLF */
                p++;
                continue;
            }
        }

        if (c == '\r' || c == '\n') {
            s->cr = (c == '\r');
            aigov_limit_sse_eol(s);
            p++;
            continue;
        }

        switch (s->state) {

        case AIGOV_SSE_START:
            if (c == ':') {
                s->state = AIGOV_SSE_SKIP;     /* a comment */
                p++;
                continue;
            }

            s->state = AIGOV_SSE_NAME;
            s->name_len = 0;
            /* fall through */

        case AIGOV_SSE_NAME:
            if (c == ':') {
                s->state = (s->name_len == 4
                            && memcmp(s->name, "data", 4) == 0)
                           ? AIGOV_SSE_SPACE : AIGOV_SSE_SKIP;
                p++;
                continue;
            }

            if (s->name_len < 4) {
                s->name[s->name_len++] = c;

            } else {
                /* longer than "data": not a field we want */
                s->state = AIGOV_SSE_SKIP;
            }

            p++;
            continue;

        case AIGOV_SSE_SPACE:
            s->state = AIGOV_SSE_VALUE;

            if (c == ' ') {
                p++;
                continue;
            }

            /* fall through */

        case AIGOV_SSE_VALUE:
            /* copy the run up to the end of the line in one go */
            stop = p;
            while (stop < end && *stop != '\n' && *stop != '\r') {
                stop++;
            }

            aigov_limit_sse_append(s, p, (size_t) (stop - p));
            p = stop;
            continue;

        default:    /* AIGOV_SSE_SKIP */
            stop = p;
            while (stop < end && *stop != '\n' && *stop != '\r') {
                stop++;
            }

            p = stop;
            continue;
        }
    }
}


void
aigov_limit_sse_finish(aigov_limit_sse_t *s)
{
    /*
     * The event-stream spec drops an event the body ends in the middle
     * of; for accounting, usage that was sent is usage that was used.
     */
    if (s->state != AIGOV_SSE_START) {
        aigov_limit_sse_eol(s);
    }

    s->cr = 0;
    aigov_limit_sse_dispatch(s);
}


int
aigov_limit_sse_usage(const aigov_limit_sse_t *s, uint64_t *total)
{
    if (!s->found) {
        return AIGOV_DECLINED;
    }

    *total = s->total;

    return AIGOV_OK;
}
