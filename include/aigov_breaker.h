/*
 * ngx_aigov: circuit breaker per model variant, pure logic free of nginx.
 *
 * The state (aigov_breaker_t) is a fixed-size POD without pointers so that
 * it can live in the shared zone; the nginx glue holds the zone's mutex
 * around every call that takes a non-const breaker, but one:
 * aigov_breaker_allow_closed() lets a call through a CLOSED breaker without
 * it, alongside the others (see there).  The configuration
 * (aigov_breaker_conf_t) is immutable, built from directives.  Times are
 * milliseconds of one clock that all workers share (ngx_current_msec,
 * CLOCK_MONOTONIC); durations are milliseconds.
 *
 * Semantics (modelled on Resilience4j's CircuitBreaker; "R4j" below):
 *
 * States.  CLOSED lets every call through and records its outcome in a
 * sliding window.  OPEN rejects every call until open_until_ms.  HALF_OPEN
 * lets at most half_open_probes calls ("probes") through and rejects the
 * rest; their outcomes decide between CLOSED and OPEN.  An all-zero
 * aigov_breaker_t is a fresh CLOSED breaker (aigov_breaker_init() is a
 * memset), so a zone allocated with ngx_slab_calloc() needs no more.
 *
 * Outcomes.  aigov_breaker_classify() maps an upstream status and error to
 * SUCCESS, FAILURE or IGNORE.  A call is slow when its duration is strictly
 * greater than slow_call_duration_ms (R4j: ">").  A slow call counts as slow
 * whether it succeeded or failed, and a slow failure also counts as a
 * failure (R4j's SLOW_ERROR).  IGNORE outcomes are not recorded at all; in
 * HALF_OPEN they hand the probe slot back (R4j's releasePermission()).
 *
 * Window.  COUNT: the last window_size (1..1024) recorded calls, a ring of
 * two bitsets.  TIME: window_size (1..60) buckets of bucket_ms each; a call
 * lands in bucket now / bucket_ms, and the window is the current bucket and
 * the window_size - 1 before it, so it covers between (window_size - 1) *
 * bucket_ms and window_size * bucket_ms of history (R4j: one-second
 * epochs).  Old buckets are dropped as time moves on.
 *
 * Tripping (CLOSED -> OPEN), checked after every recorded call, in order:
 *   - consecutive_failures (0: off): that many failures in a row (slow or
 *     not; a success resets the run, IGNORE does not) trip, whatever the
 *     window holds.  Not in R4j; it catches a dead backend fast when
 *     minimum_calls is large.
 *   - otherwise nothing happens until the window holds minimum_calls calls
 *     (for a COUNT window, min(minimum_calls, window_size), as R4j).  Then
 *     failures * 100 >= failure_rate_threshold * calls trips, and, when
 *     slow_call_rate_threshold is not 0, slow * 100 >=
 *     slow_call_rate_threshold * calls trips.  ">=" as R4j: a 50 %
 *     threshold trips at exactly half.  Integer arithmetic, no rounding.
 * The rate is only evaluated when a call is recorded: failures ageing out
 * of a TIME window never trip or untrip anything on their own.
 *
 * Open duration and backoff.  A trip from CLOSED opens for
 * open_duration_ms.  A failed HALF_OPEN opens again for the previous open
 * duration times open_backoff / 100 (at least 1 ms more, never less than
 * open_duration_ms), capped at open_duration_max_ms (0: open_duration_ms,
 * i.e. no growth).  Closing
 * resets it: the next trip from CLOSED opens for open_duration_ms again
 * (R4j's attempts counter with an exponential IntervalBiFunction).
 * Probing starts at now >= open_until_ms (R4j: strictly after), lazily: no
 * timer; aigov_breaker_state() already reports HALF_OPEN, and the next
 * aigov_breaker_allow() makes the transition.  A REJECT from OPEN carries
 * retry_after_ms = open_until_ms - now, never more than the maximum open
 * duration.
 *
 * Half-open.  Each probe takes one of half_open_probes slots; a slot is
 * held until the probe's outcome is recorded, the probe is released
 * (IGNORE), or probe_timeout_ms passes (a lost probe: the worker died, the
 * glue missed the log phase).  A lost probe's slot is freed without an
 * outcome and a later record() for it is ignored as stale, so a crash can
 * not wedge the breaker in HALF_OPEN.  Once half_open_probes outcomes are
 * recorded (R4j: minimumNumberOfCalls = permittedNumberOfCalls in
 * half-open), the failure and slow-call rates over the probes are checked
 * against the same thresholds: reaching either reopens (with backoff),
 * else the breaker closes.  consecutive_failures plays no part here.
 * Calls beyond the slots are rejected with retry_after_ms = time until the
 * first slot times out, capped at open_duration_ms (a hint: the probes
 * usually answer much sooner).  R4j has no probe timeout (it has
 * maxWaitDurationInHalfOpenState, which reopens instead).
 *
 * Window on transitions.  Entering CLOSED (probes passed, or forced)
 * empties the window and the consecutive-failure run.  OPEN keeps the
 * window that tripped it, frozen except for TIME buckets ageing out, for
 * aigov_breaker_stats().  Entering HALF_OPEN empties the probe counters.
 *
 * Permits and stale outcomes.  aigov_breaker_allow() fills a permit that
 * the glue keeps with the request and hands back to record() exactly
 * once.  Every transition increments "generation"; an outcome whose permit
 * comes from an earlier generation is ignored (counted as stale).  R4j
 * records late outcomes into whatever state it is in; here a long call
 * let through while CLOSED can neither count as a probe nor close a
 * breaker that tripped meanwhile.
 *
 * Clock.  Workers read cached clocks that differ by a few milliseconds, so
 * a time up to AIGOV_BREAKER_CLOCK_SLACK_MS behind the latest one seen is
 * taken as that latest time (time never runs backwards inside).  A larger
 * step back is a clock jump: every stored time is moved back by the step
 * (remaining open time and probe ages are kept), the TIME window is
 * emptied (its buckets no longer line up), and clock_jumps counts it.  A
 * bogus time far in the future therefore cannot keep a breaker open: the
 * next sane time rebases it.
 *
 * Not in R4j: consecutive failures, probe timeouts, generations, remote
 * trips.  Not here from R4j: DISABLED, FORCED_OPEN and METRICS_ONLY states
 * (the model's kill switch and rollback cover them; a variant without
 * breaker has none), automatic OPEN -> HALF_OPEN timers (lazy instead),
 * per-exception predicates (the status/error classifier instead).
 *
 * Configuration changes.  A breaker kept in the zone across a reload may
 * meet a different window shape or probe count: the mutating calls notice
 * it, empty the window and the probe slots (outcomes of probes already out
 * become stale), clamp the open time to the new maximum, and keep the state.
 */

#ifndef AIGOV_BREAKER_H_INCLUDED_
#define AIGOV_BREAKER_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include "aigov_core.h"


#define AIGOV_BREAKER_OK                0
#define AIGOV_BREAKER_ERROR             -1

/* states */
#define AIGOV_BREAKER_CLOSED            0
#define AIGOV_BREAKER_OPEN              1
#define AIGOV_BREAKER_HALF_OPEN         2

/* window types */
#define AIGOV_BREAKER_WINDOW_COUNT      0
#define AIGOV_BREAKER_WINDOW_TIME       1

/* limits; they size aigov_breaker_t */
#define AIGOV_BREAKER_MAX_CALLS         1024    /* COUNT window_size */
#define AIGOV_BREAKER_MAX_BUCKETS       60      /* TIME window_size */
#define AIGOV_BREAKER_MAX_PROBES        32      /* half_open_probes */
#define AIGOV_BREAKER_MAX_DURATION_MS   86400000    /* one day */
#define AIGOV_BREAKER_MIN_BUCKET_MS     10
#define AIGOV_BREAKER_MAX_BUCKET_MS     3600000
#define AIGOV_BREAKER_MAX_BACKOFF       1000    /* x10.00 */
#define AIGOV_BREAKER_CLOCK_SLACK_MS    10000

/* outcomes: aigov_breaker_classify() and aigov_breaker_record() */
#define AIGOV_BREAKER_SUCCESS           0
#define AIGOV_BREAKER_FAILURE           1
#define AIGOV_BREAKER_IGNORE            2

/*
 * Upstream errors for aigov_breaker_classify(), a bit mask.  nginx's
 * NGX_HTTP_UPSTREAM_FT_ERROR is CONNECT before the connection is up and
 * RESET after; FT_TIMEOUT is TIMEOUT; FT_INVALID_HEADER is INVALID_HEADER.
 * These four are failures before the response header.  CUT is one after
 * it: the header came, then the upstream closed, broke or stalled before
 * the end of its body (nginx has no FT_ flag for it).
 */
#define AIGOV_BREAKER_ERR_CONNECT       0x01
#define AIGOV_BREAKER_ERR_TIMEOUT       0x02
#define AIGOV_BREAKER_ERR_RESET         0x04
#define AIGOV_BREAKER_ERR_INVALID_HEADER 0x08
#define AIGOV_BREAKER_ERR_CUT           0x10
#define AIGOV_BREAKER_ERR_ALL           0x1f
#define AIGOV_BREAKER_ERR_KINDS         5       /* bits in ERR_ALL */

/* aigov_breaker_allow() */
#define AIGOV_BREAKER_ALLOW             0       /* CLOSED */
#define AIGOV_BREAKER_ALLOW_PROBE       1       /* HALF_OPEN, a slot taken */
#define AIGOV_BREAKER_REJECT            2       /* see retry_after_ms */
#define AIGOV_BREAKER_AGAIN             3       /* _allow_closed(): ask */

/* aigov_breaker_record(): what the outcome did */
#define AIGOV_BREAKER_RECORDED          0       /* counted, no transition */
#define AIGOV_BREAKER_TRIPPED           1       /* CLOSED -> OPEN */
#define AIGOV_BREAKER_REOPENED          2       /* HALF_OPEN -> OPEN */
#define AIGOV_BREAKER_RECOVERED         3       /* HALF_OPEN -> CLOSED */
#define AIGOV_BREAKER_IGNORED           4       /* IGNORE: probe released */
#define AIGOV_BREAKER_STALE             5       /* permit no longer valid */

/* why the last transition happened */
#define AIGOV_BREAKER_REASON_NONE       0
#define AIGOV_BREAKER_REASON_FAILURE_RATE 1
#define AIGOV_BREAKER_REASON_SLOW_RATE  2
#define AIGOV_BREAKER_REASON_CONSECUTIVE 3
#define AIGOV_BREAKER_REASON_PROBES_PASSED 4
#define AIGOV_BREAKER_REASON_OPEN_EXPIRED 5
#define AIGOV_BREAKER_REASON_FORCED     6
#define AIGOV_BREAKER_REASON_REMOTE     7

/* permit kinds */
#define AIGOV_BREAKER_PERMIT_NONE       0
#define AIGOV_BREAKER_PERMIT_CALL       1
#define AIGOV_BREAKER_PERMIT_PROBE      2

/* longest aigov_breaker_format_classifier() output, NUL included */
#define AIGOV_BREAKER_CLASSIFIER_LEN    4096

/* "failure conditions" when the configuration names none */
#define AIGOV_BREAKER_DEFAULT_FAILURES  "5xx timeout connect_error reset cut"

#define AIGOV_BREAKER_STATUS_WORDS      16      /* statuses 100..611 */


/*
 * What counts as a failure.  Bit (status - 100) of fail_status or
 * ignore_status; fail_errors and ignore_errors are AIGOV_BREAKER_ERR_*.
 * Built by aigov_breaker_parse_classifier(); a status is never in both.
 */
typedef struct {
    uint32_t                    fail_status[AIGOV_BREAKER_STATUS_WORDS];
    uint32_t                    ignore_status[AIGOV_BREAKER_STATUS_WORDS];
    uint32_t                    fail_errors;
    uint32_t                    ignore_errors;
} aigov_breaker_classifier_t;


/* Immutable configuration; aigov_breaker_conf_init() sets R4j's defaults. */
typedef struct {
    uint32_t                    window_type;     /* WINDOW_COUNT / _TIME */
    uint32_t                    window_size;     /* calls, or buckets */
    uint32_t                    bucket_ms;       /* TIME: bucket width */
    uint32_t                    minimum_calls;   /* >= 1 */
    uint32_t                    failure_rate_threshold;    /* % 1..100 */
    uint32_t                    slow_call_rate_threshold;  /* % 0..100 */
    uint32_t                    slow_call_duration_ms;     /* > is slow */
    uint32_t                    consecutive_failures;      /* 0: off */
    uint32_t                    open_duration_ms;
    uint32_t                    open_duration_max_ms;      /* 0: no growth */
    uint32_t                    open_backoff;    /* x100: 200 doubles */
    uint32_t                    half_open_probes;          /* 1..32 */
    uint32_t                    probe_timeout_ms;
    aigov_breaker_classifier_t  classifier;
} aigov_breaker_conf_t;


/*
 * What aigov_breaker_allow() hands out: kept by the glue in the request's
 * context (not in the zone) and given back to aigov_breaker_record().
 */
typedef struct {
    uint64_t                    generation;
    uint64_t                    retry_after_ms;  /* REJECT, else 0 */
    uint32_t                    probe_id;        /* PROBE */
    uint16_t                    slot;            /* PROBE */
    uint16_t                    kind;            /* AIGOV_BREAKER_PERMIT_* */
} aigov_breaker_permit_t;


typedef struct {
    uint32_t                    calls;
    uint32_t                    failures;
    uint32_t                    slow;
} aigov_breaker_bucket_t;


/*
 * The state, in the shared zone: 1240 bytes on LP64 whatever the
 * configuration (the two windows share a union).  Fields are private to
 * aigov_breaker.c; read them through aigov_breaker_state() and
 * aigov_breaker_stats().
 */
typedef struct {
    uint64_t                    last_ms;         /* latest time seen */
    uint64_t                    changed_ms;      /* last transition */
    uint64_t                    open_until_ms;   /* OPEN */
    uint64_t                    generation;

    /* lifetime counters */
    uint64_t                    allowed;
    uint64_t                    rejected;
    uint64_t                    stale;
    uint64_t                    probes_lost;
    uint32_t                    trips;           /* transitions to OPEN */
    uint32_t                    forced;          /* force() and remote */
    uint32_t                    clock_jumps;

    uint8_t                     state;
    uint8_t                     reason;          /* AIGOV_BREAKER_REASON_* */

    /* the configuration the window and probe slots are laid out for */
    uint8_t                     shape_type;
    uint8_t                     shape_probes;
    uint32_t                    shape_size;
    uint32_t                    shape_bucket_ms;

    uint32_t                    open_ms;         /* current open duration */
    uint32_t                    consecutive;     /* failures in a row */

    /* half-open */
    uint32_t                    probe_busy;      /* slot bit mask */
    uint32_t                    probe_seq;
    uint16_t                    probe_done;
    uint16_t                    probe_failures;
    uint16_t                    probe_slow;
    uint16_t                    reserved;
    uint32_t                    probe_id[AIGOV_BREAKER_MAX_PROBES];
    uint64_t                    probe_ms[AIGOV_BREAKER_MAX_PROBES];

    /* window totals */
    uint32_t                    calls;
    uint32_t                    failures;
    uint32_t                    slow;

    uint32_t                    seq;             /* odd while changing */

    union {
        struct {
            uint32_t            head;            /* next slot */
            uint32_t            pad;
            uint32_t            fail[AIGOV_BREAKER_MAX_CALLS / 32];
            uint32_t            slow[AIGOV_BREAKER_MAX_CALLS / 32];
        } ring;

        struct {
            uint64_t            epoch;           /* now / bucket_ms */
            aigov_breaker_bucket_t  bucket[AIGOV_BREAKER_MAX_BUCKETS];
        } time;
    } w;
} aigov_breaker_t;


typedef struct {
    uint32_t                    state;           /* lazy, as _state() */
    uint32_t                    reason;          /* of the last transition */
    uint64_t                    generation;
    uint64_t                    changed_ms;
    uint64_t                    open_until_ms;   /* OPEN: next probe time */
    uint64_t                    retry_after_ms;  /* OPEN: until then, or 0 */
    uint32_t                    open_ms;         /* current open duration */

    /* the window as of now */
    uint32_t                    calls;
    uint32_t                    failures;
    uint32_t                    slow;
    int32_t                     failure_rate;    /* 0.01 %, -1 below */
    int32_t                     slow_rate;       /* minimum_calls */
    uint32_t                    consecutive;

    uint32_t                    probes_in_flight;
    uint32_t                    probes_done;
    uint32_t                    probe_failures;
    uint32_t                    probe_slow;

    uint64_t                    allowed;
    uint64_t                    rejected;
    uint64_t                    stale;
    uint64_t                    probes_lost;
    uint32_t                    trips;
    uint32_t                    forced;
    uint32_t                    clock_jumps;
} aigov_breaker_stats_t;


/* R4j's defaults, slow calls off, classifier AIGOV_BREAKER_DEFAULT_FAILURES. */
void aigov_breaker_conf_init(aigov_breaker_conf_t *c);

/*
 * Checks ranges and consistency; on error writes a message such as
 * "window size 2000 is out of range 1..1024 for a count window" to err
 * (NUL terminated, truncated to errlen) and returns AIGOV_BREAKER_ERROR.
 */
int aigov_breaker_conf_check(const aigov_breaker_conf_t *c, char *err,
    size_t errlen);

/*
 * Parses whitespace separated conditions into cl (AIGOV_BREAKER_ERROR
 * leaves it zeroed and explains in err):
 *   5xx, 4xx ...       a class of statuses (1xx..5xx) is a failure
 *   429, 503 ...       one status (100..599) is a failure
 *   timeout, connect_error, reset, invalid_header   upstream errors
 *   cut                the body cut short after the header (ERR_CUT)
 *   error              connect_error and reset (nginx's proxy_next_upstream)
 *   !COND              COND is ignored: neither success nor failure
 * A single status overrides its class ("5xx !501"); the same status, class
 * or error twice is "duplicate", with both polarities "conflicts".
 */
int aigov_breaker_parse_classifier(aigov_breaker_classifier_t *cl,
    const char *s, size_t len, char *err, size_t errlen);

/*
 * Writes the canonical text of cl to buf (snprintf-like: returns the full
 * length, writes at most size - 1 bytes and a NUL when size > 0).  Parsing
 * it back gives the same classifier.
 */
size_t aigov_breaker_format_classifier(const aigov_breaker_classifier_t *cl,
    char *buf, size_t size);

/*
 * FAILURE when an error bit is a failure condition, else IGNORE when one is
 * an ignored condition; otherwise the status decides: IGNORE when ignored
 * or outside 100..599 (no response: nothing learnt about the backend),
 * FAILURE when listed, else SUCCESS.
 */
int aigov_breaker_classify(const aigov_breaker_conf_t *c, int status,
    unsigned upstream_error);

/* A fresh CLOSED breaker (memset 0: all-zero bytes are one too). */
void aigov_breaker_init(aigov_breaker_t *b);

/*
 * ALLOW, ALLOW_PROBE or REJECT; permit is always filled (kind NONE and
 * retry_after_ms > 0 on REJECT).  May move OPEN to HALF_OPEN.
 */
int aigov_breaker_allow(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, aigov_breaker_permit_t *permit);

/*
 * aigov_breaker_allow() for a CLOSED breaker without the mutex, safe
 * alongside the calls that hold it (they mark b as changing while they
 * run: a sequence lock).  Either ALLOW, with the permit and the counters
 * as allow() would have left them at an instant while this ran, or
 * AIGOV_BREAKER_AGAIN, permit and b untouched, when only allow() can
 * answer: the breaker is not CLOSED, a change is under way, or allow()
 * would change more than the counter (now_ms past the latest time seen,
 * or behind it by more than the slack, a new window shape...).
 */
int aigov_breaker_allow_closed(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms,
    aigov_breaker_permit_t *permit);

/*
 * Records the outcome (SUCCESS, FAILURE, IGNORE) of a call let through with
 * permit; duration_ms is how long it took (slow calls).  Returns one of
 * AIGOV_BREAKER_RECORDED ... AIGOV_BREAKER_STALE.  A permit must be
 * recorded at most once: a second record of a probe is stale, a second one
 * of a CLOSED call counts twice.
 */
int aigov_breaker_record(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, int outcome, uint64_t duration_ms,
    const aigov_breaker_permit_t *permit);

/* A permitted call that never reached the upstream: record(IGNORE). */
void aigov_breaker_release(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    uint64_t now_ms, const aigov_breaker_permit_t *permit);

/* CLOSED, OPEN or HALF_OPEN as of now_ms (an expired OPEN is HALF_OPEN). */
int aigov_breaker_state(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms);

/*
 * Admin: CLOSED (reset: empty window, no backoff), OPEN for open_ms (0: the
 * duration a trip would use now: open_duration_ms from CLOSED, grown by the
 * backoff from HALF_OPEN, the current one again from OPEN), or HALF_OPEN
 * (probe now).  Always a transition, even to the same state: generation
 * moves on and permits out are stale.  open_ms is capped at the maximum.
 */
void aigov_breaker_force(aigov_breaker_t *b, const aigov_breaker_conf_t *c,
    int state, uint64_t now_ms, uint64_t open_ms);

/*
 * A trip elsewhere in the fleet: OPEN for open_ms (capped at the maximum)
 * unless already OPEN until at least then.  Returns 1 when it opened the
 * breaker (a transition), 2 when it only pushed open_until_ms further, 0
 * when it changed nothing, so duplicates and reordered messages are
 * harmless.  The backoff carries on from open_ms.
 */
int aigov_breaker_remote_trip(aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms, uint64_t open_ms);

void aigov_breaker_stats(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c, uint64_t now_ms,
    aigov_breaker_stats_t *out);

/*
 * Internal consistency of b against c (counts match the bitsets and
 * buckets, probe slots within the limit...).  NULL when consistent, else a
 * static description.  For tests, fuzzing and debug builds.
 */
const char *aigov_breaker_verify(const aigov_breaker_t *b,
    const aigov_breaker_conf_t *c);

/* The open duration cap in effect: open_duration_max_ms, or open_duration. */
uint32_t aigov_breaker_open_max(const aigov_breaker_conf_t *c);

/* "closed", "open", "half_open"; "tripped", ...; "failure_rate", ... */
const char *aigov_breaker_state_name(int state);
const char *aigov_breaker_event_name(int event);
const char *aigov_breaker_reason_name(int reason);


#endif /* AIGOV_BREAKER_H_INCLUDED_ */
