/*
 * ngx_aigov: rate-limit math, free of nginx (tests/test_limit.c).
 *
 * Plain integers and caller buffers only: the nginx glue owns the shared
 * memory, the locking, the clock, Redis and the response headers.
 *
 *
 * UNITS AND CLOCK
 *
 *   Every time the caller passes in or reads back is in milliseconds:
 *   "now", the period, reset and retry-after.  Local limits want a
 *   monotonic clock shared by the workers (ngx_current_msec); fleet limits
 *   want wall-clock milliseconds (windows are aligned on the Unix epoch so
 *   that every node agrees on them).  Inside, the GCRA keeps nanoseconds
 *   so that 100000t/m (0.6 ms per token) or 7r/s (142.857 ms) lose at most
 *   1 ns per take; all products go through a 128 bit multiply-divide, so
 *   nothing overflows: now and time spans saturate at AIGOV_GCRA_TIME_MAX
 *   (2^62 ns, 146 years: wall-clock ms work until 2116), TAT at twice
 *   that.
 *
 *
 * LIMIT SPEC
 *
 *   "RATE UNIT / [N] PERIOD" and a burst: "10r/s", "600r/m", "5r/h",
 *   "100000t/m", "1000r/d", "50r/10s".  r counts requests, t counts LLM
 *   tokens (the OpenAI usage field).  The period is a whole number of
 *   seconds, 1s .. 1d.  rate is 1 .. 4294967295 units per period.
 *   burst is the capacity of the bucket in units: how many may be taken
 *   at once from a full bucket; it defaults to rate (the whole quota of a
 *   period may be used at once, then it refills at rate / period).
 *   Note: nginx's limit_req "burst" counts the excess over one request;
 *   here burst=5 lets exactly 5 through at once.
 *
 *
 * LOCAL LIMITS: GCRA (generic cell rate algorithm)
 *
 *   A token bucket of capacity B = burst refilled continuously at
 *   rate / period, stored as one time: the theoretical arrival time TAT.
 *   With T = period / rate (the emission interval, ns per unit) and
 *   tau = B * T (the bucket's capacity in time):
 *
 *     x = max(TAT, now) - now            how "full of debt" the bucket is
 *     take(cost) is allowed   iff  x + cost * T <= tau
 *     allowed:   TAT = max(TAT, now) + cost * T
 *     remaining  = floor((tau - x') * rate / period)   x' after the take
 *     reset      = x'  (until the bucket is full again), ms rounded up
 *     retry_after = x + cost * T - tau  when denied, ms rounded up: the
 *                  earliest time the same take would be allowed
 *
 *   cost * T and B * T are rounded down to whole nanoseconds, and are at
 *   least 1 ns per unit (rates above 10^9 units per second act as 10^9):
 *   k takes whose costs add up to B are always allowed together from a
 *   full bucket.  "remaining" is exact, or one low when T is not a whole
 *   number of nanoseconds.
 *
 *   10r/s burst=5 from a full bucket at t=0: five takes allowed
 *   (remaining 4, 3, 2, 1, 0), the sixth denied with retry_after 100 ms;
 *   at t=100 one more is allowed.
 *
 *   Defined corner cases:
 *     cost 0         a peek: reports the state, changes nothing, allowed.
 *     cost > burst   AIGOV_LIMIT_NEVER: no amount of waiting helps (answer
 *                    429 with x-should-retry: false, no Retry-After).
 *     rate 0, period 0, burst 0
 *                    AIGOV_LIMIT_NEVER for every cost, peeks included:
 *                    block all, fail closed.
 *     clock going backwards
 *                    "now" is clamped to the latest time this state was
 *                    written with (aigov_gcra_t.last): a worker with a
 *                    slightly stale cached time, or a clock step back,
 *                    neither refills nor drains the bucket; time stands
 *                    still until the clock catches up.
 *     overflow       huge rates, periods, bursts, costs and times
 *                    saturate (AIGOV_GCRA_TIME_MAX): a saturated TAT
 *                    means "blocked for 146 years", never a wrap to 0
 *                    or a bucket that looks full.
 *
 *   LLM tokens are known only after the response.  The pre-check takes an
 *   estimate (1 by default, or a configured guess) with aigov_gcra_take();
 *   when the usage is known, aigov_gcra_settle() charges the difference
 *   (or refunds an over-estimate).  A charge is never refused: it may push
 *   TAT beyond now + tau, into debt, and then the NEXT requests are denied
 *   until the debt is paid off at rate / period.  A refund never makes the
 *   bucket fuller than full.
 *
 *   Several limits on one request (per second and per minute): check them
 *   all with aigov_gcra_check() and commit them all with
 *   aigov_gcra_commit() only if all allow, under one lock, so that a
 *   request denied by the per-minute limit does not eat per-second quota.
 *   aigov_limit_pick() then chooses the limit to report.
 *
 *
 * FLEET LIMITS: sliding window counters synced through Redis
 *
 *   A GCRA state cannot be merged from deltas, counters can.  A fleet
 *   limit counts units per fixed window [k * period, (k + 1) * period) of
 *   wall-clock time (windows aligned on the epoch, so every node means the
 *   same window) and decides on a sliding window estimate, as Cloudflare's
 *   and Kong Enterprise's limiters do: at time now in window k, with C the
 *   count of window k, P the count of window k - 1 and left the time to
 *   the end of window k,
 *       estimate = C + floor(P * left / period)
 *   and a take of cost units passes iff estimate + cost <= rate.  The
 *   previous window's count fades out as the current one fills: a fixed
 *   window would let up to 2 * rate through around a window boundary (all
 *   of one window's quota at its end, all of the next at its start), the
 *   estimate at most 1.5 * rate in any span of one period (a window's
 *   quota all at its end, half of it again in the first half of the next),
 *   and exactly rate when the arrivals spread evenly.  Under overload the
 *   admissions spread over the window, about rate / period at a time,
 *   instead of a whole window's quota at once followed by refusals until
 *   the window ends.  burst is not used.
 *
 *   strict mode: every request runs a script in Redis that reads both
 *   windows' counts and INCRBYs the current one only when the estimate
 *   allows: exact and atomic, at the cost of a Redis round trip per
 *   request; aigov_window_strict() turns its answer into a result.
 *
 *   synced mode (default): each node decides locally and every sync
 *   interval I sends its deltas (aigov_window_sync_begin / _done):
 *     admitted units: INCRBY on the window's key -> G, the fleet's count;
 *                     after a window change, also on the previous
 *                     window's key (this node's unsent admissions of it,
 *                     or 0), for the first AIGOV_WINDOW_PREV_READS syncs
 *                     -> GP, the fleet's final count of that window;
 *     offered units:  INCRBY on a per-key counter that is not windowed;
 *                     its growth between two of our syncs is the fleet's
 *                     demand, ours included -> our share s of the demand
 *                     and the others' demand per window, O.
 *   A take is allowed iff both sliding window estimates allow it:
 *     (1) this node's: admitted here in this window and the previous one,
 *         against A = max(rate * s, rate - O)
 *     (2) the fleet's: G (GP) plus what this node admitted in the window
 *         (the previous window) but is not in G (GP) yet, against rate
 *   (1) splits the quota in proportion to demand when the fleet wants
 *   more than the quota (rate * s), and lets a node use what the others
 *   leave when it does not (rate - O): a fleet under its limit does not
 *   reject.  It needs no fresh counts, so it holds even when I >= period.
 *   (2) stops the fleet once Redis says the quota is used up.
 *   s and O move towards each new sample by n / (n + 32), n the units in
 *   the sample (few units are noisy); rate * s is dithered per window
 *   rather than rounded up, which would add up to N units per window.
 *
 *   Error bound.  With N nodes offering lambda_i units per window each,
 *   steady over two sync intervals, s_i = lambda_i / sum(lambda): the
 *   fleet admits min(sum(lambda), rate) per window, exactly on average
 *   over windows.  What is left is sampling noise: a sample of n units
 *   is off by about 1 / sqrt(n), n = sum(lambda) * I / period, and taking
 *   the larger of two noisy estimates in (1) makes it an excess rather
 *   than a deficit.  Measured by tests/test_limit.c (random arrivals,
 *   fixed seed, 2x overload, Redis round trip 2 or 30 ms, I = 100 ms ..
 *   1 s): two nodes -0.6 .. +0.4 % of 100r/s, three nodes 0.0 .. +1.8 %,
 *   6000r/m -0.1 .. +0.1 % (fixed windows, before: +1.2 .. +2.8 %,
 *   +2.0 .. +4.9 %, 0.0 .. +0.7 %: their quota went in a window's first
 *   moments, on shares learnt before); under the limit nothing is
 *   rejected.  A hard bound whatever the noise: (2) caps the excess at
 *   what the other nodes admit while this node's G is stale, at most two
 *   sync intervals and a round trip: (N - 1) * max(lambda_i) * (2 I +
 *   latency) / period (useful when I is well below the period).
 *   When the demand moves from one node to another, the node that gets
 *   it follows after one or two sync intervals and rejects too much
 *   meanwhile: demand swapping between two nodes every 10 s costs 0.3 ..
 *   6.6 % of the quota for I <= 500 ms, 6.9 .. 12.7 % at I = 1 s.
 *   Warm-up: a node without two sync replies assumes s = 1, so the first
 *   window after a start admits more; (2) applies from the first reply.
 *
 *   Fleet token limits charge actual usage with aigov_window_charge(): it
 *   goes to the current window (a debt, like the GCRA's).  An over-estimate
 *   goes back with aigov_window_refund() to the window it was taken from
 *   while that window still counts (it or the next one is the current
 *   window): off the unsent delta, and what was sent already with a
 *   DECRBY.  Strict ones charge, or give back, in Redis directly (the
 *   glue's INCRBY / DECRBY).
 *
 *
 * RESPONSE HEADERS
 *
 *   RateLimit-Policy and RateLimit as in draft-ietf-httpapi-ratelimit-
 *   headers-10/-11 (Structured Field lists, the syntax of -08 onwards):
 *     RateLimit-Policy: "per-key";q=10;w=1, "tpm";q=100000;qu="tokens";w=60
 *     RateLimit: "per-key";r=4;t=1, "tpm";r=99000;t=1
 *   q = rate, w = period in seconds, r = remaining; t = seconds until the
 *   bucket is full again (a fleet limit's estimate is back to 0, up to two
 *   periods), or when the request is denied
 *   seconds until it may be retried; no t for AIGOV_LIMIT_NEVER.
 *   qu="tokens" is not (yet) in the draft's quota unit registry; it is
 *   sent anyway because leaving qu out would mean "requests".
 *
 *   OpenAI style, for the limit aigov_limit_pick() chooses per unit:
 *     x-ratelimit-limit-requests: 60
 *     x-ratelimit-remaining-requests: 59
 *     x-ratelimit-reset-requests: 1s        (Go duration: 20ms, 1.5s, 6m0s)
 *   and the -tokens variants.  Retry-After is whole seconds rounded up,
 *   never 0 when rejected.  The OpenAI SDKs (Python, Node: Stainless)
 *   read retry-after-ms first, then Retry-After, honour values in
 *   (0, 60] s and otherwise back off on their own; x-should-retry: false
 *   stops their retries (send it with AIGOV_LIMIT_NEVER).
 */

#ifndef AIGOV_LIMIT_H_INCLUDED_
#define AIGOV_LIMIT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "aigov_core.h"


/* what a limit counts */
#define AIGOV_LIMIT_REQUESTS    0
#define AIGOV_LIMIT_TOKENS      1
#define AIGOV_LIMIT_ANY         2       /* aigov_limit_pick() only */

/* outcome of a take */
#define AIGOV_LIMIT_ALLOWED     0
#define AIGOV_LIMIT_REJECTED    1       /* retry after retry_after_ms */
#define AIGOV_LIMIT_NEVER       2       /* cost > burst, or rate 0 */

#define AIGOV_LIMIT_PERIOD_MAX  86400000        /* 1d, in ms */
#define AIGOV_LIMIT_NAME_MAX    64

/* now and spans saturate here (ns, 146 years), TAT at twice that */
#define AIGOV_GCRA_TIME_MAX     ((uint64_t) 1 << 62)

/* shares of fleet demand are fixed point: 65536 == 100 % */
#define AIGOV_WINDOW_SHARE_ONE  65536


typedef struct {
    uint32_t  rate;         /* units per period; 0 blocks all */
    uint32_t  period_ms;    /* 1000 .. AIGOV_LIMIT_PERIOD_MAX when parsed */
    uint32_t  burst;        /* bucket capacity in units */
    uint32_t  unit;         /* AIGOV_LIMIT_REQUESTS or _TOKENS */
} aigov_limit_spec_t;


typedef struct {
    int       status;           /* AIGOV_LIMIT_ALLOWED, _REJECTED, _NEVER */
    int       allowed;          /* status == AIGOV_LIMIT_ALLOWED */
    uint64_t  limit;            /* the spec's rate: q and x-ratelimit-limit */
    uint64_t  remaining;        /* units that could still be taken now */
    uint64_t  reset_ms;         /* until full again (estimate 0) */
    uint64_t  retry_after_ms;   /* until this take would pass; 0 if allowed */
} aigov_limit_result_t;


/* --- GCRA, local limits --------------------------------------------------- */

/*
 * 16 bytes per (key, limit) in shared memory; all zeroes is a full bucket.
 * Both fields are in nanoseconds of the caller's clock.
 */
typedef struct {
    uint64_t  tat;      /* theoretical arrival time */
    uint64_t  last;     /* latest "now" written: the clock never goes back */
} aigov_gcra_t;


/*
 * Would cost units be allowed now?  Fills r as if they were taken (when
 * allowed) and changes nothing.  Returns r->status.
 */
int aigov_gcra_check(const aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r);

/* Takes cost units unconditionally: after a check that allowed them. */
void aigov_gcra_commit(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost);

/* check, then commit if allowed.  Returns r->status. */
int aigov_gcra_take(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r);

/*
 * Charges cost units after the fact, never refusing: the bucket may go
 * into debt (TAT beyond now + tau), so that the next takes are denied.
 */
void aigov_gcra_charge(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t cost);

/* Gives back units taken in excess; the bucket never gets fuller than full */
void aigov_gcra_refund(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t units);

/*
 * Settles a token request taken with "estimated" units once the response
 * says "actual": charges or refunds the difference.
 */
void aigov_gcra_settle(aigov_gcra_t *s, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t estimated, uint64_t actual);


/* --- sliding windows, fleet limits ---------------------------------------- */

/* syncs that read the previous window's count after a window change */
#define AIGOV_WINDOW_PREV_READS  2

/*
 * 80 bytes per (key, limit) in shared memory; all zeroes is a fresh state.
 * Times are wall-clock ms; counters saturate at UINT32_MAX.  The prev_
 * fields are the same counts for the window before the current one.
 */
typedef struct {
    uint64_t  window;       /* start of the current window, ms */
    uint64_t  synced;       /* time of the last sync reply, ms */
    uint64_t  offered_seen; /* fleet "offered" counter at the last sync */
    uint32_t  admitted;     /* admitted here in this window */
    uint32_t  unsynced;     /* part of admitted not sent to Redis yet */
    uint32_t  inflight;     /* part of admitted sent, reply pending */
    uint32_t  global;       /* fleet count of this window (last reply) */
    uint32_t  prev_admitted;
    uint32_t  prev_unsynced;
    uint32_t  prev_inflight;
    uint32_t  prev_global;
    uint32_t  prev_reads;   /* replies with prev_global since the change */
    uint32_t  offered;      /* offered here since the last send */
    uint32_t  share;        /* of fleet demand, 1/65536; 0: unknown (100%) */
    uint32_t  others;       /* other nodes' offered units per window */
    uint32_t  samples;      /* sync replies seen */
} aigov_window_t;

/* One sync: what the glue sends to Redis and hands back with the reply. */
typedef struct {
    uint64_t  window;       /* the window key the admitted units go to */
    uint32_t  admitted;     /* INCRBY <prefix>:<key>:<window> admitted */
    uint32_t  prev_admitted;/* INCRBY <...>:<window - period> prev_admitted */
    uint32_t  offered;      /* INCRBY <prefix>:<key>:offered offered */
    uint32_t  prev;         /* send the previous window's INCRBY (maybe 0) */
    uint32_t  fresh;        /* this node's first sync in the window */
} aigov_window_sync_t;


/* Start of the window that holds now: now - now % period. */
uint64_t aigov_window_start(const aigov_limit_spec_t *spec, uint64_t now);

/*
 * Would cost units be admitted now?  Fills r (as if admitted when they
 * would be) and changes nothing.  Returns r->status.  r->reset_ms is the
 * time until the estimate is back to 0 (the current window's count fades
 * out with the next window), r->retry_after_ms the time until the
 * estimate has room for cost, if nothing else is admitted meanwhile.
 */
int aigov_window_check(const aigov_window_t *w,
    const aigov_limit_spec_t *spec, uint64_t now, uint32_t cost,
    aigov_limit_result_t *r);

/* Counts cost as offered (demand), whatever the decision. */
void aigov_window_offer(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost);

/* Counts cost as admitted, after a check that allowed it. */
void aigov_window_commit(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost);

/* Token usage known after the response: a debt in the current window. */
void aigov_window_charge(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint64_t cost);

/*
 * Token usage known after the response, below the estimate: gives back
 * units admitted in the window that starts at window (the estimate's),
 * at most what this node admitted there, nothing once that window no
 * longer counts (neither it nor the next one is the current window).
 * What was not sent yet is taken off the next sync; the return value is
 * the part already sent to Redis, for the glue to take back there
 * (DECRBY of that window's key).
 */
uint64_t aigov_window_refund(aigov_window_t *w,
    const aigov_limit_spec_t *spec, uint64_t now, uint64_t window,
    uint64_t units);

/* offer, check, commit if allowed.  Returns r->status. */
int aigov_window_take(aigov_window_t *w, const aigov_limit_spec_t *spec,
    uint64_t now, uint32_t cost, aigov_limit_result_t *r);

/*
 * Moves to the window of now, then moves the unsent deltas into msg; the
 * glue sends msg to Redis and keeps it for _done or _failed.
 */
void aigov_window_sync_begin(aigov_window_t *w,
    const aigov_limit_spec_t *spec, uint64_t now, aigov_window_sync_t *msg);

/*
 * Redis answered: global_admitted is what INCRBY returned for msg->window,
 * global_prev what it returned for the previous window (when msg->prev),
 * global_offered what it returned for the offered counter.
 */
void aigov_window_sync_done(aigov_window_t *w,
    const aigov_limit_spec_t *spec, const aigov_window_sync_t *msg,
    uint64_t now, uint64_t global_admitted, uint64_t global_prev,
    uint64_t global_offered);

/* Redis failed: the deltas go back, to be sent next time. */
void aigov_window_sync_failed(aigov_window_t *w,
    const aigov_limit_spec_t *spec, const aigov_window_sync_t *msg);

/* Is there something to send or to learn: should the node stay dirty? */
int aigov_window_wants_sync(const aigov_window_t *w);

/*
 * Strict mode: Redis's script decided (admitted) from the fleet's count
 * of the current window and of the previous one; count includes this
 * request when admitted.  Fills r; returns r->status.
 */
int aigov_window_strict(const aigov_limit_spec_t *spec, uint64_t now,
    uint64_t count, uint64_t prev, uint32_t cost, int admitted,
    aigov_limit_result_t *r);

/*
 * The rule of the glue's strict script (Lua, in Redis), in C for the unit
 * tests: would count + floor(prev * left / period) + cost <= rate?
 */
int aigov_window_admits(const aigov_limit_spec_t *spec, uint64_t now,
    uint64_t count, uint64_t prev, uint64_t cost);


/* --- several limits ------------------------------------------------------- */

/*
 * The limit to report among n results, counting only those of the unit
 * (AIGOV_LIMIT_ANY: all): a NEVER one first, else the rejected one with
 * the longest retry_after, else the one with the least remaining.
 * Returns its index, or -1 when none has that unit.
 */
int aigov_limit_pick(const aigov_limit_spec_t *specs,
    const aigov_limit_result_t *results, size_t n, uint32_t unit);


/* --- config --------------------------------------------------------------- */

/*
 * "10r/s", "600r/m", "100000t/m", "5r/h", "50r/10s": sets rate, period_ms
 * and unit, and burst = rate.  Returns AIGOV_OK, or AIGOV_ERROR with a
 * reason in err (NUL terminated, may be NULL); spec is untouched on error.
 */
int aigov_limit_parse_rate(const char *s, size_t len,
    aigov_limit_spec_t *spec, char *err, size_t errlen);

/* The N of "burst=N": 1 .. 4294967295. */
int aigov_limit_parse_burst(const char *s, size_t len, uint32_t *burst,
    char *err, size_t errlen);

/* Policy names: 1..AIGOV_LIMIT_NAME_MAX of [A-Za-z0-9._-]. */
int aigov_limit_valid_name(const char *s, size_t len);


/* --- headers -------------------------------------------------------------- */

/*
 * All formatters write into buf (size bytes), NUL terminate, and return
 * the length without the NUL, or 0 (and buf[0] = '\0') when it does not
 * fit or the input cannot be represented.
 */

typedef struct {
    aigov_str_t                  name;      /* the policy's identifier */
    const aigov_limit_spec_t    *spec;
    const aigov_limit_result_t  *result;    /* RateLimit only */
} aigov_limit_policy_t;

typedef struct {
    aigov_str_t  name;
    aigov_str_t  value;     /* points into the caller's buf */
} aigov_limit_header_t;

/* RateLimit-Policy: "name";q=600;w=60, ... */
size_t aigov_limit_format_policy(char *buf, size_t size,
    const aigov_limit_policy_t *p, size_t n);

/* RateLimit: "name";r=12;t=5, ... */
size_t aigov_limit_format_ratelimit(char *buf, size_t size,
    const aigov_limit_policy_t *p, size_t n);

/*
 * x-ratelimit-{limit,remaining,reset}-{requests,tokens}: fills h[0..2],
 * with values stored one after the other in buf.
 */
size_t aigov_limit_format_openai(char *buf, size_t size,
    const aigov_limit_spec_t *spec, const aigov_limit_result_t *r,
    aigov_limit_header_t h[3]);

/* Go's time.Duration.String() of ms: "0s", "20ms", "1.5s", "6m0s". */
size_t aigov_limit_format_duration(char *buf, size_t size, uint64_t ms);

/* Retry-After: seconds rounded up, at least 1. */
size_t aigov_limit_format_retry_after(char *buf, size_t size, uint64_t ms);

size_t aigov_limit_format_uint(char *buf, size_t size, uint64_t v);


/* --- usage of LLM responses ----------------------------------------------- */

/*
 * Tokens of one OpenAI response body (or one SSE event): usage.total_tokens,
 * else prompt_tokens + completion_tokens, else input_tokens +
 * output_tokens; "usage" at the top level, else in "response" (the
 * Responses API's response.completed event).  Returns AIGOV_OK,
 * AIGOV_DECLINED when there is no usable usage object (absent, null,
 * no counts), AIGOV_ERROR when json is not JSON.
 */
int aigov_limit_usage_tokens(const char *json, size_t len, uint64_t *total);

/*
 * The same answer for a whole response body, about ten times cheaper: one
 * pass over the text reads the counts without building a document; what
 * it is not sure to judge as jansson would (escaped keys, \u0000, invalid
 * UTF-8, huge numbers, deep nesting, text that is not JSON) goes to
 * aigov_limit_usage_tokens().  Same rc, same *total, for any input.
 */
int aigov_limit_usage_scan(const char *json, size_t len, uint64_t *total);

/* How many scans went to jansson (per process; for tests and profiling). */
extern uint64_t  aigov_limit_scan_fallbacks;

/*
 * The same answer for any body that jansson accepts, for a fraction of
 * the cost: a structural scan that follows only the nesting and the
 * strings, skips string contents eight bytes at a time, and reads (with
 * the exact scanner) only the top-level "usage" and "response"."usage".
 * It validates no more than those, so a malformed body that still carries
 * a well-formed top-level usage is counted; what it is unsure of (the
 * root is not an object, an escaped key that might be "usage" or
 * "response", a body that does not end) goes to aigov_limit_usage_scan().
 * Never reads outside json[0..len).
 */
int aigov_limit_usage_fast(const char *json, size_t len, uint64_t *total);

/* How many fast scans went to aigov_limit_usage_scan(). */
extern uint64_t  aigov_limit_fast_fallbacks;

/*
 * Incremental scanner of a text/event-stream body.  Feed it the body in
 * chunks split anywhere; it assembles the "data" of each event (lines
 * ended by LF, CRLF or CR, events by a blank line, several data lines
 * joined by LF) in the caller's buffer, and reads only events that
 * contain a "usage" object, with aigov_limit_usage_fast() (the same
 * answer as aigov_limit_usage_tokens() for an event that is JSON).  An
 * event larger than the buffer is skipped whole.  The usage of the last
 * event that had one wins (OpenAI sends it in the final chunk with
 * stream_options.include_usage).
 */
typedef struct {
    char      *buf;         /* the caller's memory, e.g. 64 KiB */
    size_t     size;
    size_t     len;         /* data of the current event */
    uint64_t   total;       /* tokens from the last usage seen */
    uint32_t   events;      /* events dispatched */
    uint32_t   skipped;     /* events too large for buf */
    unsigned   state:3;
    unsigned   name_len:3;
    unsigned   cr:1;        /* last byte was CR: a following LF is eaten */
    unsigned   has_data:1;  /* the event has at least one data line */
    unsigned   overflow:1;
    unsigned   found:1;
    char       name[4];     /* the field name, while it may be "data" */
} aigov_limit_sse_t;

void aigov_limit_sse_init(aigov_limit_sse_t *s, char *buf, size_t size);
void aigov_limit_sse_feed(aigov_limit_sse_t *s, const char *data,
    size_t len);

/* End of the body: dispatches an unterminated last event. */
void aigov_limit_sse_finish(aigov_limit_sse_t *s);

/* AIGOV_OK with *total when some event carried usage, else DECLINED. */
int aigov_limit_sse_usage(const aigov_limit_sse_t *s, uint64_t *total);


/* floor(a * b / c) without overflow, saturated at max (c > 0); for tests */
uint64_t aigov_limit_muldiv(uint64_t a, uint64_t b, uint64_t c,
    uint64_t max);


#endif /* AIGOV_LIMIT_H_INCLUDED_ */
