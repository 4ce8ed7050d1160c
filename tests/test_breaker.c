/*
 * ngx_aigov: unit tests for the circuit breaker (include/aigov_breaker.h,
 * ngx_aigov_module/aigov_breaker.c).  cmocka; one behaviour per test, time
 * driven by explicit now_ms values.
 *
 * Build and run: make -C tests   (also: asan, valgrind, fuzz)
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aigov_breaker.h"


#define S(lit)  (lit), (sizeof(lit) - 1)

#define T0      1000000     /* a start time that is not 0 */


/* ------------------------------------------------------------------------ */
/* helpers                                                                    */
/* ------------------------------------------------------------------------ */

/* A count window of size calls, open 1 s, 3 probes, probe timeout 10 s. */
static aigov_breaker_conf_t
conf_count(uint32_t size, uint32_t min, uint32_t threshold)
{
    aigov_breaker_conf_t  c;

    aigov_breaker_conf_init(&c);

    c.window_type = AIGOV_BREAKER_WINDOW_COUNT;
    c.window_size = size;
    c.minimum_calls = min;
    c.failure_rate_threshold = threshold;
    c.open_duration_ms = 1000;
    c.half_open_probes = 3;
    c.probe_timeout_ms = 10000;

    assert_int_equal(aigov_breaker_conf_check(&c, NULL, 0),
                     AIGOV_BREAKER_OK);

    return c;
}


/* A time window of buckets one-second buckets. */
static aigov_breaker_conf_t
conf_time(uint32_t buckets, uint32_t min, uint32_t threshold)
{
    aigov_breaker_conf_t  c;

    c = conf_count(10, min, threshold);
    c.window_type = AIGOV_BREAKER_WINDOW_TIME;
    c.window_size = buckets;
    c.bucket_ms = 1000;

    assert_int_equal(aigov_breaker_conf_check(&c, NULL, 0),
                     AIGOV_BREAKER_OK);

    return c;
}


/* One call through allow() and record(): returns record()'s event. */
static int
call(aigov_breaker_t *b, const aigov_breaker_conf_t *c, uint64_t now,
    int outcome, uint64_t duration)
{
    int                     rc;
    aigov_breaker_permit_t  p;

    rc = aigov_breaker_allow(b, c, now, &p);
    assert_true(rc == AIGOV_BREAKER_ALLOW || rc == AIGOV_BREAKER_ALLOW_PROBE);

    rc = aigov_breaker_record(b, c, now + duration, outcome, duration, &p);
    assert_null(aigov_breaker_verify(b, c));

    return rc;
}


static void
calls(aigov_breaker_t *b, const aigov_breaker_conf_t *c, uint64_t now,
    int outcome, unsigned n)
{
    while (n--) {
        assert_int_equal(call(b, c, now, outcome, 0), AIGOV_BREAKER_RECORDED);
    }
}


/* Trips a fresh breaker at now through consecutive failures. */
static void
trip(aigov_breaker_t *b, const aigov_breaker_conf_t *c, uint64_t now)
{
    aigov_breaker_force(b, c, AIGOV_BREAKER_OPEN, now, 0);
    assert_int_equal(aigov_breaker_state(b, c, now), AIGOV_BREAKER_OPEN);
}


static aigov_breaker_stats_t
stats(const aigov_breaker_t *b, const aigov_breaker_conf_t *c, uint64_t now)
{
    aigov_breaker_stats_t  st;

    aigov_breaker_stats(b, c, now, &st);

    return st;
}


/* ------------------------------------------------------------------------ */
/* configuration                                                              */
/* ------------------------------------------------------------------------ */

static void
test_conf_defaults_are_valid(void **state)
{
    aigov_breaker_conf_t  c;
    char                  err[128];

    (void) state;

    aigov_breaker_conf_init(&c);

    assert_int_equal(aigov_breaker_conf_check(&c, err, sizeof(err)),
                     AIGOV_BREAKER_OK);
    assert_int_equal(c.window_type, AIGOV_BREAKER_WINDOW_COUNT);
    assert_int_equal(c.window_size, 100);
    assert_int_equal(c.minimum_calls, 100);
    assert_int_equal(c.failure_rate_threshold, 50);
    assert_int_equal(c.slow_call_rate_threshold, 0);
    assert_int_equal(c.open_duration_ms, 60000);
    assert_int_equal(c.half_open_probes, 10);
    assert_int_equal(aigov_breaker_open_max(&c), 60000);
}


static void
conf_rejects(const aigov_breaker_conf_t *c, const char *msg)
{
    char  err[160];

    memset(err, 'X', sizeof(err));
    assert_int_equal(aigov_breaker_conf_check(c, err, sizeof(err)),
                     AIGOV_BREAKER_ERROR);
    assert_string_equal(err, msg);
}


static void
test_conf_window_errors(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);
    c.window_size = 0;
    conf_rejects(&c, "window size 0 is out of range 1..1024 for a count "
                     "window");
    c.window_size = 1025;
    conf_rejects(&c, "window size 1025 is out of range 1..1024 for a count "
                     "window");

    c.window_type = AIGOV_BREAKER_WINDOW_TIME;
    c.window_size = 61;
    conf_rejects(&c, "window size 61 is out of range 1..60 buckets for a "
                     "time window");
    c.window_size = 60;
    c.bucket_ms = 9;
    conf_rejects(&c, "bucket width 9 ms is out of range 10..3600000 ms");

    c.window_type = 7;
    conf_rejects(&c, "unknown window type 7");
}


static void
test_conf_threshold_errors(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);
    c.minimum_calls = 0;
    conf_rejects(&c, "minimum calls must be at least 1");

    aigov_breaker_conf_init(&c);
    c.failure_rate_threshold = 0;
    conf_rejects(&c, "failure rate threshold 0% is out of range 1..100%");
    c.failure_rate_threshold = 101;
    conf_rejects(&c, "failure rate threshold 101% is out of range 1..100%");

    aigov_breaker_conf_init(&c);
    c.slow_call_rate_threshold = 101;
    conf_rejects(&c, "slow call rate threshold 101% is out of range "
                     "0..100%");
    c.slow_call_rate_threshold = 50;
    c.slow_call_duration_ms = 0;
    conf_rejects(&c, "a slow call rate threshold needs a slow call "
                     "duration");
}


static void
test_conf_open_errors(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);
    c.open_duration_ms = 0;
    conf_rejects(&c, "open duration 0 ms is out of range 1..86400000 ms");

    aigov_breaker_conf_init(&c);
    c.open_duration_max_ms = 1000;
    conf_rejects(&c, "maximum open duration 1000 ms is below the open "
                     "duration 60000 ms");

    aigov_breaker_conf_init(&c);
    c.open_backoff = 99;
    conf_rejects(&c, "open backoff 0.99 is out of range 1.00..10.00");
    c.open_backoff = 1001;
    conf_rejects(&c, "open backoff 10.01 is out of range 1.00..10.00");

    c.open_backoff = 150;
    conf_rejects(&c, "open backoff 1.50 needs a maximum open duration above "
                     "the open duration 60000 ms");
    c.open_duration_max_ms = 60001;
    assert_int_equal(aigov_breaker_conf_check(&c, NULL, 0),
                     AIGOV_BREAKER_OK);
}


static void
test_conf_probe_errors(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);
    c.half_open_probes = 0;
    conf_rejects(&c, "half-open probes 0 is out of range 1..32");
    c.half_open_probes = 33;
    conf_rejects(&c, "half-open probes 33 is out of range 1..32");

    aigov_breaker_conf_init(&c);
    c.probe_timeout_ms = 0;
    conf_rejects(&c, "probe timeout 0 ms is out of range 1..86400000 ms");
}


static void
test_conf_classifier_errors(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);
    memset(&c.classifier, 0, sizeof(c.classifier));
    conf_rejects(&c, "no failure conditions");

    c.classifier.fail_status[0] = 1;
    c.classifier.ignore_status[0] = 1;
    conf_rejects(&c, "a status is both a failure and ignored");

    memset(&c.classifier, 0, sizeof(c.classifier));
    c.classifier.fail_errors = AIGOV_BREAKER_ERR_TIMEOUT;
    c.classifier.ignore_errors = AIGOV_BREAKER_ERR_TIMEOUT;
    conf_rejects(&c, "an upstream error is both a failure and ignored");
}


/* ------------------------------------------------------------------------ */
/* classification                                                             */
/* ------------------------------------------------------------------------ */

static void
test_classify_default_statuses(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);

    assert_int_equal(aigov_breaker_classify(&c, 500, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 503, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 599, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 200, 0),
                     AIGOV_BREAKER_SUCCESS);
    assert_int_equal(aigov_breaker_classify(&c, 404, 0),
                     AIGOV_BREAKER_SUCCESS);
    assert_int_equal(aigov_breaker_classify(&c, 429, 0),
                     AIGOV_BREAKER_SUCCESS);
    assert_int_equal(aigov_breaker_classify(&c, 499, 0),
                     AIGOV_BREAKER_SUCCESS);
}


static void
test_classify_default_upstream_errors(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);

    /* no status at all: the error alone decides */
    assert_int_equal(aigov_breaker_classify(&c, 0, AIGOV_BREAKER_ERR_TIMEOUT),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 0, AIGOV_BREAKER_ERR_CONNECT),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 0, AIGOV_BREAKER_ERR_RESET),
                     AIGOV_BREAKER_FAILURE);

    /* invalid_header is not in the default list: the 502 decides */
    assert_int_equal(aigov_breaker_classify(&c, 502,
                                    AIGOV_BREAKER_ERR_INVALID_HEADER),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 0,
                                    AIGOV_BREAKER_ERR_INVALID_HEADER),
                     AIGOV_BREAKER_IGNORE);
}


/* The default failure set has "cut": a body cut short after its header. */
static void
test_classify_default_cut(void **state)
{
    char                  buf[AIGOV_BREAKER_CLASSIFIER_LEN];
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);

    assert_true(c.classifier.fail_errors & AIGOV_BREAKER_ERR_CUT);
    assert_false(c.classifier.ignore_errors & AIGOV_BREAKER_ERR_CUT);

    /* a 200 whose body was cut fails; the same 200 in full succeeds */
    assert_int_equal(aigov_breaker_classify(&c, 200, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 200, 0),
                     AIGOV_BREAKER_SUCCESS);
    assert_int_equal(aigov_breaker_classify(&c, 404, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_FAILURE);

    aigov_breaker_format_classifier(&c.classifier, buf, sizeof(buf));
    assert_string_equal(buf, "5xx connect_error timeout reset cut");
}


static void
test_classify_no_status_is_ignored(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    aigov_breaker_conf_init(&c);

    assert_int_equal(aigov_breaker_classify(&c, 0, 0), AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, 99, 0), AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, 600, 0),
                     AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, -1, 0), AIGOV_BREAKER_IGNORE);
}


static void
parse_ok(aigov_breaker_conf_t *c, const char *s, size_t len)
{
    char  err[160];

    aigov_breaker_conf_init(c);
    assert_int_equal(aigov_breaker_parse_classifier(&c->classifier, s, len,
                                                    err, sizeof(err)),
                     AIGOV_BREAKER_OK);
    assert_string_equal(err, "");
    assert_int_equal(aigov_breaker_conf_check(c, err, sizeof(err)),
                     AIGOV_BREAKER_OK);
}


static void
test_classify_parsed_list(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    parse_ok(&c, S("5xx 429 timeout connect_error"));

    assert_int_equal(aigov_breaker_classify(&c, 429, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 428, 0),
                     AIGOV_BREAKER_SUCCESS);
    assert_int_equal(aigov_breaker_classify(&c, 500, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 0, AIGOV_BREAKER_ERR_TIMEOUT),
                     AIGOV_BREAKER_FAILURE);

    /* reset is not listed here: no status, nothing learnt */
    assert_int_equal(aigov_breaker_classify(&c, 0, AIGOV_BREAKER_ERR_RESET),
                     AIGOV_BREAKER_IGNORE);
}


static void
test_classify_status_overrides_class(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    parse_ok(&c, S("5xx !501 !4xx 404"));

    assert_int_equal(aigov_breaker_classify(&c, 500, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 501, 0),
                     AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, 403, 0),
                     AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, 404, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 200, 0),
                     AIGOV_BREAKER_SUCCESS);
}


static void
test_classify_error_shorthand(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    parse_ok(&c, S("error"));

    assert_int_equal(c.classifier.fail_errors,
                     AIGOV_BREAKER_ERR_CONNECT | AIGOV_BREAKER_ERR_RESET);
    assert_int_equal(aigov_breaker_classify(&c, 200, AIGOV_BREAKER_ERR_RESET),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 504,
                                            AIGOV_BREAKER_ERR_TIMEOUT),
                     AIGOV_BREAKER_SUCCESS);
}


/* A listed error decides before the status, whichever way. */
static void
test_classify_error_before_status(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    parse_ok(&c, S("5xx !timeout"));
    assert_int_equal(aigov_breaker_classify(&c, 504,
                                            AIGOV_BREAKER_ERR_TIMEOUT),
                     AIGOV_BREAKER_IGNORE);

    parse_ok(&c, S("!5xx timeout"));
    assert_int_equal(aigov_breaker_classify(&c, 504,
                                            AIGOV_BREAKER_ERR_TIMEOUT),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 502, 0),
                     AIGOV_BREAKER_IGNORE);

    /* several bits: one failing bit is enough */
    assert_int_equal(aigov_breaker_classify(&c, 0, AIGOV_BREAKER_ERR_TIMEOUT
                                                   | AIGOV_BREAKER_ERR_RESET),
                     AIGOV_BREAKER_FAILURE);
}


/*
 * "cut" as any error: listed it fails, "!cut" ignores the call whatever
 * its header's status, not listed the status decides.
 */
static void
test_classify_cut(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    parse_ok(&c, S("cut"));
    assert_int_equal(c.classifier.fail_errors, AIGOV_BREAKER_ERR_CUT);
    assert_int_equal(c.classifier.ignore_errors, 0);
    assert_int_equal(aigov_breaker_classify(&c, 200, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 500, 0),
                     AIGOV_BREAKER_SUCCESS);

    parse_ok(&c, S("5xx !cut"));
    assert_int_equal(c.classifier.fail_errors, 0);
    assert_int_equal(c.classifier.ignore_errors, AIGOV_BREAKER_ERR_CUT);
    assert_int_equal(aigov_breaker_classify(&c, 200, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, 500, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_IGNORE);
    assert_int_equal(aigov_breaker_classify(&c, 500, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 200, 0),
                     AIGOV_BREAKER_SUCCESS);

    parse_ok(&c, S("5xx timeout"));
    assert_int_equal(aigov_breaker_classify(&c, 200, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_SUCCESS);
    assert_int_equal(aigov_breaker_classify(&c, 503, AIGOV_BREAKER_ERR_CUT),
                     AIGOV_BREAKER_FAILURE);

    /* "error" is connect_error and reset: a cut is not one */
    parse_ok(&c, S("error !cut"));
    assert_int_equal(c.classifier.fail_errors,
                     AIGOV_BREAKER_ERR_CONNECT | AIGOV_BREAKER_ERR_RESET);
    assert_int_equal(c.classifier.ignore_errors, AIGOV_BREAKER_ERR_CUT);
}


static void
test_classify_whitespace_and_case(void **state)
{
    aigov_breaker_conf_t  c;

    (void) state;

    parse_ok(&c, S(" \t5XX\n429\r "));
    assert_int_equal(aigov_breaker_classify(&c, 555, 0),
                     AIGOV_BREAKER_FAILURE);
    assert_int_equal(aigov_breaker_classify(&c, 429, 0),
                     AIGOV_BREAKER_FAILURE);
}


static void
parse_fails(const char *s, size_t len, const char *msg)
{
    char                        err[160];
    aigov_breaker_classifier_t  cl, zero;

    memset(&cl, 0xff, sizeof(cl));
    memset(&zero, 0, sizeof(zero));
    memset(err, 'X', sizeof(err));

    assert_int_equal(aigov_breaker_parse_classifier(&cl, s, len, err,
                                                    sizeof(err)),
                     AIGOV_BREAKER_ERROR);
    assert_string_equal(err, msg);
    assert_memory_equal(&cl, &zero, sizeof(cl));
}


static void
test_parse_empty(void **state)
{
    (void) state;

    parse_fails(S(""), "no failure conditions");
    parse_fails(S(" \t\r\n "), "no failure conditions");
}


static void
test_parse_unknown(void **state)
{
    (void) state;

    parse_fails(S("5xx foo"), "unknown failure condition \"foo\"");
    parse_fails(S("Timeout"), "unknown failure condition \"Timeout\"");
    parse_fails(S("42a"), "unknown failure condition \"42a\"");
    parse_fails(S("5x"), "unknown failure condition \"5x\"");
    parse_fails(S("5xxx"), "unknown failure condition \"5xxx\"");
    parse_fails(S("!!5xx"), "unknown failure condition \"!!5xx\"");
    parse_fails(S("5xx,429"), "unknown failure condition \"5xx,429\"");
}


static void
test_parse_status_range(void **state)
{
    (void) state;

    parse_fails(S("600"), "status \"600\" is out of range 100..599");
    parse_fails(S("99"), "status \"99\" is out of range 100..599");
    parse_fails(S("0500"), "status \"0500\" is out of range 100..599");
    parse_fails(S("!1000000000000"),
                "status \"!1000000000000\" is out of range 100..599");
    parse_fails(S("6xx"), "status class \"6xx\" is out of range 1xx..5xx");
    parse_fails(S("!0xx"), "status class \"!0xx\" is out of range 1xx..5xx");
}


static void
test_parse_duplicates(void **state)
{
    (void) state;

    parse_fails(S("429 429"), "duplicate \"429\"");
    parse_fails(S("!5xx !5xx"), "duplicate \"!5xx\"");
    parse_fails(S("5xx 5XX"), "\"5XX\" repeats \"5xx\"");
    parse_fails(S("timeout 5xx timeout"), "duplicate \"timeout\"");
    parse_fails(S("error reset"), "\"reset\" repeats \"error\"");
    parse_fails(S("connect_error error"),
                "\"error\" repeats \"connect_error\"");
    parse_fails(S("cut 5xx cut"), "duplicate \"cut\"");
    parse_fails(S("!cut !cut"), "duplicate \"!cut\"");
}


static void
test_parse_conflicts(void **state)
{
    (void) state;

    parse_fails(S("429 !429"), "\"!429\" conflicts with \"429\"");
    parse_fails(S("!5xx 5xx"), "\"5xx\" conflicts with \"!5xx\"");
    parse_fails(S("error !reset"), "\"!reset\" conflicts with \"error\"");
    parse_fails(S("!timeout timeout"),
                "\"timeout\" conflicts with \"!timeout\"");
    parse_fails(S("cut !cut"), "\"!cut\" conflicts with \"cut\"");
    parse_fails(S("Cut"), "unknown failure condition \"Cut\"");
    parse_fails(S("!cuts"), "unknown failure condition \"!cuts\"");
}


static void
test_parse_lone_bang(void **state)
{
    (void) state;

    parse_fails(S("5xx !"), "missing condition after \"!\"");
    parse_fails(S("! 5xx"), "missing condition after \"!\"");
}


/* Bytes a log line cannot show are escaped; long tokens are cut. */
static void
test_parse_message_escapes_and_truncates(void **state)
{
    (void) state;

    parse_fails(S("5xx \x01\"bad\\\xff"),
                "unknown failure condition \"\\x01\\x22bad\\x5c\\xff\"");
    parse_fails(S("abcdefghijklmnopqrstuvwxyz0123456789"),
                "unknown failure condition "
                "\"abcdefghijklmnopqrstuvwxyz012345...\"");

    /* a NUL is a byte like any other, not the end of the input */
    parse_fails("5xx\0", 4, "unknown failure condition \"5xx\\x00\"");
}


static void
test_parse_error_buffer(void **state)
{
    char                        err[8];
    aigov_breaker_classifier_t  cl;

    (void) state;

    assert_int_equal(aigov_breaker_parse_classifier(&cl, S("foo"), NULL, 0),
                     AIGOV_BREAKER_ERROR);

    memset(err, 'X', sizeof(err));
    assert_int_equal(aigov_breaker_parse_classifier(&cl, S("foo"), err,
                                                    sizeof(err)),
                     AIGOV_BREAKER_ERROR);
    assert_string_equal(err, "unknown");
}


static void
test_format_canonical(void **state)
{
    char                        buf[AIGOV_BREAKER_CLASSIFIER_LEN];
    size_t                      n;
    aigov_breaker_classifier_t  cl, again;

    (void) state;

    assert_int_equal(aigov_breaker_parse_classifier(&cl,
                         S("!reset 5xx timeout 429 !501"), NULL, 0),
                     AIGOV_BREAKER_OK);

    n = aigov_breaker_format_classifier(&cl, buf, sizeof(buf));
    assert_string_equal(buf, "429 5xx !501 timeout !reset");
    assert_int_equal(n, strlen(buf));

    assert_int_equal(aigov_breaker_parse_classifier(&again, buf, n, NULL, 0),
                     AIGOV_BREAKER_OK);
    assert_memory_equal(&cl, &again, sizeof(cl));
}


/* Every error in the canonical order, "cut" last, either way. */
static void
test_format_errors_and_cut(void **state)
{
    char                        buf[AIGOV_BREAKER_CLASSIFIER_LEN];
    size_t                      n;
    aigov_breaker_classifier_t  cl, again;

    (void) state;

    assert_int_equal(aigov_breaker_parse_classifier(&cl,
                         S("!cut invalid_header 5xx error timeout"), NULL, 0),
                     AIGOV_BREAKER_OK);
    assert_int_equal(cl.fail_errors, AIGOV_BREAKER_ERR_ALL
                                     & ~AIGOV_BREAKER_ERR_CUT);
    assert_int_equal(cl.ignore_errors, AIGOV_BREAKER_ERR_CUT);

    n = aigov_breaker_format_classifier(&cl, buf, sizeof(buf));
    assert_string_equal(buf, "5xx connect_error timeout reset invalid_header "
                             "!cut");

    assert_int_equal(aigov_breaker_parse_classifier(&again, buf, n, NULL, 0),
                     AIGOV_BREAKER_OK);
    assert_memory_equal(&cl, &again, sizeof(cl));

    assert_int_equal(aigov_breaker_parse_classifier(&cl, S("cut 429"), NULL,
                                                    0),
                     AIGOV_BREAKER_OK);
    aigov_breaker_format_classifier(&cl, buf, sizeof(buf));
    assert_string_equal(buf, "429 cut");
}


/* Every status of a class listed one by one comes back as the class. */
static void
test_format_folds_full_class(void **state)
{
    char                        in[600], buf[AIGOV_BREAKER_CLASSIFIER_LEN];
    size_t                      n;
    unsigned                    st;
    aigov_breaker_classifier_t  cl;

    (void) state;

    n = 0;

    for (st = 300; st < 400; st++) {
        n += (size_t) snprintf(in + n, sizeof(in) - n,
                               (st == 302) ? "%u " : "!%u ", st);
    }

    assert_int_equal(aigov_breaker_parse_classifier(&cl, in, n, NULL, 0),
                     AIGOV_BREAKER_OK);
    aigov_breaker_format_classifier(&cl, buf, sizeof(buf));
    assert_string_equal(buf, "!3xx 302");
}


static void
test_format_truncates(void **state)
{
    char                        buf[6];
    size_t                      n;
    aigov_breaker_classifier_t  cl;

    (void) state;

    assert_int_equal(aigov_breaker_parse_classifier(&cl, S("5xx timeout"),
                                                    NULL, 0),
                     AIGOV_BREAKER_OK);

    memset(buf, 'X', sizeof(buf));
    n = aigov_breaker_format_classifier(&cl, buf, sizeof(buf));
    assert_int_equal(n, strlen("5xx timeout"));
    assert_string_equal(buf, "5xx t");

    assert_int_equal(aigov_breaker_format_classifier(&cl, NULL, 0), n);
}


/* ------------------------------------------------------------------------ */
/* closed: tripping                                                           */
/* ------------------------------------------------------------------------ */

static void
test_zero_breaker_is_closed(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    memset(&b, 0, sizeof(b));

    assert_int_equal(aigov_breaker_state(&b, &c, T0), AIGOV_BREAKER_CLOSED);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0, &p),
                     AIGOV_BREAKER_ALLOW);
    assert_int_equal(p.kind, AIGOV_BREAKER_PERMIT_CALL);
    assert_int_equal(p.retry_after_ms, 0);
    assert_null(aigov_breaker_verify(&b, &c));
}


/* ">=": 5 failures in 10 calls trip a 50 % threshold. */
static void
test_trips_at_exactly_threshold(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 5);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 4);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
    assert_int_equal(aigov_breaker_state(&b, &c, T0), AIGOV_BREAKER_OPEN);
    assert_int_equal(stats(&b, &c, T0).reason,
                     AIGOV_BREAKER_REASON_FAILURE_RATE);
    assert_int_equal(stats(&b, &c, T0).trips, 1);
}


/* One in three is 33.3 %: below a 34 % threshold, no rounding up. */
static void
test_no_trip_just_below_threshold(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(3, 3, 34);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 2);
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(aigov_breaker_state(&b, &c, T0), AIGOV_BREAKER_CLOSED);

    /* S S F + S -> S F S: 1 of 3 is 33.3 %, >= 33 % */
    c.failure_rate_threshold = 33;
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 0),
                     AIGOV_BREAKER_TRIPPED);
}


static void
test_no_trip_below_minimum_calls(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(100, 10, 50);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 9);
    assert_int_equal(stats(&b, &c, T0).failure_rate, -1);
    assert_int_equal(aigov_breaker_state(&b, &c, T0), AIGOV_BREAKER_CLOSED);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
}


/* R4j: a count window never holds more than its size calls. */
static void
test_minimum_calls_capped_at_count_window(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(5, 100, 100);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 4);
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
}


static void
test_slow_call_rate_trips(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(4, 4, 100);
    c.slow_call_rate_threshold = 50;
    c.slow_call_duration_ms = 1000;
    aigov_breaker_init(&b);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 10),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1000),
                     AIGOV_BREAKER_RECORDED);   /* not > 1000: not slow */
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1001),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(stats(&b, &c, T0).slow, 1);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 5000),
                     AIGOV_BREAKER_TRIPPED);
    assert_int_equal(stats(&b, &c, T0).reason,
                     AIGOV_BREAKER_REASON_SLOW_RATE);
}


/* A slow failure is a failure and a slow call (R4j's SLOW_ERROR). */
static void
test_slow_failure_counts_twice(void **state)
{
    aigov_breaker_t        b;
    aigov_breaker_conf_t   c;
    aigov_breaker_stats_t  st;

    (void) state;

    c = conf_count(10, 10, 50);
    c.slow_call_duration_ms = 100;
    aigov_breaker_init(&b);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 200),
                     AIGOV_BREAKER_RECORDED);

    st = stats(&b, &c, T0);
    assert_int_equal(st.calls, 1);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.slow, 1);
}


/* slow_call_duration_ms 0: nothing is slow, however long it took. */
static void
test_slow_duration_zero_is_off(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    c.slow_call_duration_ms = 0;
    aigov_breaker_init(&b);

    call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 999999);
    assert_int_equal(stats(&b, &c, T0).slow, 0);
}


static void
test_consecutive_failures_trip(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(100, 100, 50);
    c.consecutive_failures = 3;
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 2);
    assert_int_equal(stats(&b, &c, T0).consecutive, 2);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
    assert_int_equal(stats(&b, &c, T0).reason,
                     AIGOV_BREAKER_REASON_CONSECUTIVE);
}


static void
test_consecutive_reset_by_success_not_by_ignore(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(100, 100, 50);
    c.consecutive_failures = 3;
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 2);
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 2);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_IGNORE, 0),
                     AIGOV_BREAKER_IGNORED);
    assert_int_equal(stats(&b, &c, T0).calls, 5);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
}


/* ------------------------------------------------------------------------ */
/* open                                                                       */
/* ------------------------------------------------------------------------ */

static void
test_open_rejects_with_retry_after(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(2, 2, 50);
    c.open_duration_ms = 5000;
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1234, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.kind, AIGOV_BREAKER_PERMIT_NONE);
    assert_int_equal(p.retry_after_ms, 5000 - 1234);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 4999, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.retry_after_ms, 1);
    assert_int_equal(stats(&b, &c, T0 + 4999).rejected, 2);
}


/* OPEN expires without a timer: state() already says so, allow() moves. */
static void
test_lazy_half_open_at_expiry(void **state)
{
    uint64_t                gen;
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_stats_t   st;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    trip(&b, &c, T0);
    gen = b.generation;

    assert_int_equal(aigov_breaker_state(&b, &c, T0 + 999),
                     AIGOV_BREAKER_OPEN);
    assert_int_equal(aigov_breaker_state(&b, &c, T0 + 1000),
                     AIGOV_BREAKER_HALF_OPEN);

    st = stats(&b, &c, T0 + 1000);
    assert_int_equal(st.state, AIGOV_BREAKER_HALF_OPEN);
    assert_int_equal(st.retry_after_ms, 0);
    assert_int_equal(st.open_until_ms, T0 + 1000);
    assert_int_equal(b.generation, gen);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(b.generation, gen + 1);
    assert_int_equal(p.generation, gen + 1);
    assert_int_equal(stats(&b, &c, T0 + 1000).reason,
                     AIGOV_BREAKER_REASON_OPEN_EXPIRED);
}


/* Outcomes of calls let through before the trip do not count. */
static void
test_late_outcome_after_trip_is_stale(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  early, probe;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0, &early),
                     AIGOV_BREAKER_ALLOW);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 10,
                                          AIGOV_BREAKER_FAILURE, 10, &early),
                     AIGOV_BREAKER_STALE);

    /* nor once half-open: it is not a probe */
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &probe),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 1000,
                                          AIGOV_BREAKER_SUCCESS, 1000,
                                          &early),
                     AIGOV_BREAKER_STALE);
    assert_int_equal(stats(&b, &c, T0 + 1000).probes_done, 0);
    assert_int_equal(stats(&b, &c, T0 + 1000).stale, 2);
}


/* ------------------------------------------------------------------------ */
/* half-open                                                                  */
/* ------------------------------------------------------------------------ */

static void
test_probe_limit(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p[4];

    (void) state;

    c = conf_count(10, 10, 50);     /* 3 probes, 10 s probe timeout */
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p[0]),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1100, &p[1]),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1200, &p[2]),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_true(p[0].slot != p[1].slot && p[1].slot != p[2].slot
                && p[0].slot != p[2].slot);
    assert_true(p[0].probe_id != p[1].probe_id);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1300, &p[3]),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p[3].kind, AIGOV_BREAKER_PERMIT_NONE);

    /* first slot frees at T0 + 11000; capped at the 1 s open duration */
    assert_int_equal(p[3].retry_after_ms, 1000);
    assert_int_equal(stats(&b, &c, T0 + 1300).probes_in_flight, 3);
}


static void
test_probe_reject_retry_after_until_first_timeout(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 1;
    c.probe_timeout_ms = 500;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1200, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.retry_after_ms, 300);
}


static void
test_probes_success_closes(void **state)
{
    aigov_breaker_t        b;
    aigov_breaker_conf_t   c;
    aigov_breaker_stats_t  st;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 4);
    trip(&b, &c, T0);

    assert_int_equal(call(&b, &c, T0 + 1000, AIGOV_BREAKER_SUCCESS, 5),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(call(&b, &c, T0 + 1010, AIGOV_BREAKER_SUCCESS, 5),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(call(&b, &c, T0 + 1020, AIGOV_BREAKER_SUCCESS, 5),
                     AIGOV_BREAKER_RECOVERED);

    st = stats(&b, &c, T0 + 1030);
    assert_int_equal(st.state, AIGOV_BREAKER_CLOSED);
    assert_int_equal(st.reason, AIGOV_BREAKER_REASON_PROBES_PASSED);
    assert_int_equal(st.calls, 0);          /* window emptied on close */
    assert_int_equal(st.probes_done, 0);
    assert_int_equal(st.open_ms, 0);
}


/* R4j: the rate over the probes decides, not "all must succeed". */
static void
test_probes_judged_by_rate(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    calls(&b, &c, T0 + 1000, AIGOV_BREAKER_FAILURE, 1);
    calls(&b, &c, T0 + 1000, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(call(&b, &c, T0 + 1000, AIGOV_BREAKER_SUCCESS, 0),
                     AIGOV_BREAKER_RECOVERED);        /* 33 % < 50 % */

    trip(&b, &c, T0 + 2000);
    calls(&b, &c, T0 + 3000, AIGOV_BREAKER_FAILURE, 1);
    calls(&b, &c, T0 + 3000, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(call(&b, &c, T0 + 3000, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_REOPENED);         /* 67 % >= 50 % */
}


static void
test_slow_probes_reopen(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 2;
    c.slow_call_rate_threshold = 100;
    c.slow_call_duration_ms = 100;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    calls(&b, &c, T0 + 1000, AIGOV_BREAKER_SUCCESS, 1);     /* fast */

    /* one slow of two: 50 % < 100 %, closes */
    assert_int_equal(call(&b, &c, T0 + 1000, AIGOV_BREAKER_SUCCESS, 101),
                     AIGOV_BREAKER_RECOVERED);

    trip(&b, &c, T0 + 2000);
    assert_int_equal(call(&b, &c, T0 + 3000, AIGOV_BREAKER_SUCCESS, 101),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(call(&b, &c, T0 + 3000, AIGOV_BREAKER_SUCCESS, 101),
                     AIGOV_BREAKER_REOPENED);
    assert_int_equal(stats(&b, &c, T0 + 3202).reason,
                     AIGOV_BREAKER_REASON_SLOW_RATE);
}


/* Failed half-opens: 1 s, 2 s, 4 s, 5 s (the maximum), 5 s. */
static void
test_reopen_backoff_grows_to_max(void **state)
{
    uint64_t              now;
    unsigned              i;
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;
    static const uint32_t expect[] = { 1000, 2000, 4000, 5000, 5000 };

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 1;
    c.open_backoff = 200;
    c.open_duration_max_ms = 5000;
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 9);
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);

    now = T0;

    for (i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        assert_int_equal(stats(&b, &c, now).open_ms, expect[i]);
        assert_int_equal(stats(&b, &c, now).retry_after_ms, expect[i]);

        now += expect[i];
        assert_int_equal(aigov_breaker_state(&b, &c, now - 1),
                         AIGOV_BREAKER_OPEN);
        assert_int_equal(call(&b, &c, now, AIGOV_BREAKER_FAILURE, 0),
                         AIGOV_BREAKER_REOPENED);
    }
}


static void
test_backoff_non_integer_multiplier(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 1;
    c.open_duration_ms = 1;
    c.open_backoff = 150;
    c.open_duration_max_ms = 10;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    /* 1 ms x 1.5 is still 1 ms in integers: it must grow anyway */
    assert_int_equal(call(&b, &c, T0 + 1, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_REOPENED);
    assert_int_equal(stats(&b, &c, T0 + 1).open_ms, 2);
    assert_int_equal(call(&b, &c, T0 + 3, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_REOPENED);
    assert_int_equal(stats(&b, &c, T0 + 3).open_ms, 3);
    assert_int_equal(call(&b, &c, T0 + 6, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_REOPENED);
    assert_int_equal(stats(&b, &c, T0 + 6).open_ms, 4);
}


static void
test_backoff_reset_after_close(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(2, 2, 50);
    c.half_open_probes = 1;
    c.open_backoff = 300;
    c.open_duration_max_ms = 60000;
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
    assert_int_equal(call(&b, &c, T0 + 1000, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_REOPENED);
    assert_int_equal(stats(&b, &c, T0 + 1000).open_ms, 3000);

    assert_int_equal(call(&b, &c, T0 + 4000, AIGOV_BREAKER_SUCCESS, 0),
                     AIGOV_BREAKER_RECOVERED);

    calls(&b, &c, T0 + 5000, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(call(&b, &c, T0 + 5000, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
    assert_int_equal(stats(&b, &c, T0 + 5000).open_ms, 1000);
}


static void
test_ignored_probe_frees_slot(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p, q;

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 1;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &q),
                     AIGOV_BREAKER_REJECT);

    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 1001,
                                          AIGOV_BREAKER_IGNORE, 1, &p),
                     AIGOV_BREAKER_IGNORED);
    assert_int_equal(stats(&b, &c, T0 + 1001).probes_done, 0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1002, &q),
                     AIGOV_BREAKER_ALLOW_PROBE);
    aigov_breaker_release(&b, &c, T0 + 1003, &q);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1004, &q),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_null(aigov_breaker_verify(&b, &c));
}


static void
test_probe_recorded_twice_is_stale(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 1001,
                                          AIGOV_BREAKER_FAILURE, 1, &p),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 1002,
                                          AIGOV_BREAKER_FAILURE, 2, &p),
                     AIGOV_BREAKER_STALE);
    assert_int_equal(stats(&b, &c, T0 + 1002).probes_done, 1);
    assert_int_equal(stats(&b, &c, T0 + 1002).probe_failures, 1);
}


/* A probe whose outcome never comes back frees its slot after the timeout. */
static void
test_lost_probe_freed_after_timeout(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  lost, p;

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 1;
    c.probe_timeout_ms = 10000;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &lost),
                     AIGOV_BREAKER_ALLOW_PROBE);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 10999, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.retry_after_ms, 1);
    assert_int_equal(stats(&b, &c, T0 + 10999).probes_in_flight, 1);
    assert_int_equal(stats(&b, &c, T0 + 11000).probes_in_flight, 0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 11000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(p.slot, lost.slot);
    assert_int_equal(stats(&b, &c, T0 + 11000).probes_lost, 1);

    /* the lost one answers after all: its slot is someone else's now */
    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 11001,
                                          AIGOV_BREAKER_SUCCESS, 1, &lost),
                     AIGOV_BREAKER_STALE);
    assert_int_equal(aigov_breaker_record(&b, &c, T0 + 11002,
                                          AIGOV_BREAKER_SUCCESS, 2, &p),
                     AIGOV_BREAKER_RECOVERED);
}


/* ------------------------------------------------------------------------ */
/* windows                                                                    */
/* ------------------------------------------------------------------------ */

static void
test_count_window_wraps(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(4, 4, 75);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 2);
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 2);    /* F F S S: 50 % */
    assert_int_equal(stats(&b, &c, T0).failure_rate, 5000);

    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);    /* F S S S */
    assert_int_equal(stats(&b, &c, T0).failures, 1);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 1);    /* S S S F */
    assert_int_equal(stats(&b, &c, T0).failures, 1);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 1);    /* S S F F */
    assert_int_equal(stats(&b, &c, T0).failures, 2);
    assert_int_equal(stats(&b, &c, T0).calls, 4);

    assert_int_equal(call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);          /* S F F F: 75 % */
}


/* The largest count window wraps several times and stays consistent. */
static void
test_count_window_largest(void **state)
{
    unsigned              i;
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(AIGOV_BREAKER_MAX_CALLS, AIGOV_BREAKER_MAX_CALLS, 100);
    aigov_breaker_init(&b);

    for (i = 0; i < 3 * AIGOV_BREAKER_MAX_CALLS + 7; i++) {
        call(&b, &c, T0, (i % 3 == 0) ? AIGOV_BREAKER_FAILURE
                                      : AIGOV_BREAKER_SUCCESS, i % 5);
    }

    assert_int_equal(stats(&b, &c, T0).calls, AIGOV_BREAKER_MAX_CALLS);
    assert_int_equal(stats(&b, &c, T0).failures, 342);
}


static void
test_time_window_buckets_expire(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_time(10, 4, 50);       /* 10 x 1 s */
    aigov_breaker_init(&b);

    calls(&b, &c, 500, AIGOV_BREAKER_FAILURE, 2);      /* bucket 0 */
    calls(&b, &c, 1500, AIGOV_BREAKER_SUCCESS, 1);     /* bucket 1 */

    assert_int_equal(stats(&b, &c, 9999).calls, 3);
    assert_int_equal(stats(&b, &c, 9999).failures, 2);

    /* bucket 10 starts: bucket 0 leaves the window */
    assert_int_equal(stats(&b, &c, 10000).calls, 1);
    assert_int_equal(stats(&b, &c, 10000).failures, 0);

    /* 1 failure in 4: with the expired two it would have been 3 in 6 */
    calls(&b, &c, 10000, AIGOV_BREAKER_FAILURE, 1);
    calls(&b, &c, 10000, AIGOV_BREAKER_SUCCESS, 2);
    assert_int_equal(stats(&b, &c, 10000).calls, 4);
    assert_int_equal(aigov_breaker_state(&b, &c, 10000),
                     AIGOV_BREAKER_CLOSED);

    assert_int_equal(stats(&b, &c, 11000).calls, 3);   /* bucket 1 left */
    assert_int_equal(stats(&b, &c, 19999).calls, 3);
    assert_int_equal(stats(&b, &c, 20000).calls, 0);
}


static void
test_time_window_long_gap_empties(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_time(5, 3, 50);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 2);
    calls(&b, &c, T0 + 3600000, AIGOV_BREAKER_SUCCESS, 2);
    assert_int_equal(stats(&b, &c, T0 + 3600000).calls, 2);
    assert_int_equal(stats(&b, &c, T0 + 3600000).failures, 0);
    assert_int_equal(call(&b, &c, T0 + 3600000, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_RECORDED);
}


/* Minimum calls count the whole time window, not a bucket. */
static void
test_time_window_trips_across_buckets(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_time(3, 4, 50);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 1);
    calls(&b, &c, T0 + 1000, AIGOV_BREAKER_FAILURE, 1);
    calls(&b, &c, T0 + 2000, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(call(&b, &c, T0 + 2500, AIGOV_BREAKER_SUCCESS, 0),
                     AIGOV_BREAKER_TRIPPED);
}


/* ------------------------------------------------------------------------ */
/* force, remote trips, stats                                                 */
/* ------------------------------------------------------------------------ */

static void
test_force_open_durations(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    c.open_backoff = 200;
    c.open_duration_max_ms = 3000;
    aigov_breaker_init(&b);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0, 0);
    assert_int_equal(stats(&b, &c, T0).retry_after_ms, 1000);
    assert_int_equal(stats(&b, &c, T0).reason, AIGOV_BREAKER_REASON_FORCED);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0, 2500);
    assert_int_equal(stats(&b, &c, T0).retry_after_ms, 2500);

    /* again from OPEN: the current duration once more */
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0 + 100, 0);
    assert_int_equal(stats(&b, &c, T0 + 100).retry_after_ms, 2500);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0, 999999);
    assert_int_equal(stats(&b, &c, T0).retry_after_ms, 3000);

    /* from HALF_OPEN: as a failed probe would, grown by the backoff */
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0, 1000);
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_HALF_OPEN, T0, 0);
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0, 0);
    assert_int_equal(stats(&b, &c, T0).retry_after_ms, 2000);

    assert_int_equal(stats(&b, &c, T0).forced, 7);
    assert_int_equal(stats(&b, &c, T0).trips, 6);
}


static void
test_force_closed_resets(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;
    uint64_t                gen;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 3);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0, &p),
                     AIGOV_BREAKER_ALLOW);
    gen = b.generation;

    /* closed to closed is still a transition: a reset */
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_CLOSED, T0, 0);
    assert_int_equal(b.generation, gen + 1);
    assert_int_equal(stats(&b, &c, T0).calls, 0);
    assert_int_equal(stats(&b, &c, T0).consecutive, 0);
    assert_int_equal(aigov_breaker_record(&b, &c, T0, AIGOV_BREAKER_FAILURE,
                                          0, &p),
                     AIGOV_BREAKER_STALE);

    trip(&b, &c, T0);
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_CLOSED, T0 + 1, 0);
    assert_int_equal(aigov_breaker_state(&b, &c, T0 + 1),
                     AIGOV_BREAKER_CLOSED);
    assert_int_equal(stats(&b, &c, T0 + 1).open_ms, 0);
}


static void
test_force_half_open_probes_now(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, T0, 60000);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_HALF_OPEN, T0 + 5, 0);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 5, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);

    /* an unknown state changes nothing */
    aigov_breaker_force(&b, &c, 42, T0 + 6, 0);
    assert_int_equal(aigov_breaker_state(&b, &c, T0 + 6),
                     AIGOV_BREAKER_HALF_OPEN);
    assert_int_equal(stats(&b, &c, T0 + 6).forced, 2);
}


static void
test_remote_trip(void **state)
{
    uint64_t              gen;
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    c.open_duration_max_ms = 30000;
    aigov_breaker_init(&b);

    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0, 0), 0);
    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0, 5000), 1);
    assert_int_equal(aigov_breaker_state(&b, &c, T0), AIGOV_BREAKER_OPEN);
    assert_int_equal(stats(&b, &c, T0).reason, AIGOV_BREAKER_REASON_REMOTE);
    gen = b.generation;

    /* the same message again, or an older one: nothing */
    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0, 5000), 0);
    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0 + 1000, 4000), 0);

    /* a later deadline only extends, no new generation */
    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0 + 1000, 9000), 2);
    assert_int_equal(b.generation, gen);
    assert_int_equal(stats(&b, &c, T0 + 1000).retry_after_ms, 9000);

    /* capped at the maximum */
    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0 + 1000, 99999), 2);
    assert_int_equal(stats(&b, &c, T0 + 1000).retry_after_ms, 30000);

    /* expired: a new trip */
    assert_int_equal(aigov_breaker_remote_trip(&b, &c, T0 + 31000, 100), 1);
    assert_int_equal(b.generation, gen + 1);
}


static void
test_stats(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_stats_t   st;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(8, 4, 50);
    c.slow_call_duration_ms = 100;
    aigov_breaker_init(&b);

    call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 10);
    call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 150);
    call(&b, &c, T0, AIGOV_BREAKER_FAILURE, 10);

    st = stats(&b, &c, T0);
    assert_int_equal(st.state, AIGOV_BREAKER_CLOSED);
    assert_int_equal(st.calls, 3);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.slow, 1);
    assert_int_equal(st.failure_rate, -1);          /* 3 < 4 calls */
    assert_int_equal(st.slow_rate, -1);

    call(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 10);
    st = stats(&b, &c, T0);
    assert_int_equal(st.failure_rate, 2500);         /* 25.00 % */
    assert_int_equal(st.slow_rate, 2500);
    assert_int_equal(st.allowed, 4);
    assert_int_equal(st.generation, 0);

    assert_int_equal(call(&b, &c, T0 + 200, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(call(&b, &c, T0 + 210, AIGOV_BREAKER_FAILURE, 0),
                     AIGOV_BREAKER_TRIPPED);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 300, &p),
                     AIGOV_BREAKER_REJECT);

    st = stats(&b, &c, T0 + 300);
    assert_int_equal(st.state, AIGOV_BREAKER_OPEN);
    assert_int_equal(st.generation, 1);
    assert_int_equal(st.changed_ms, T0 + 210);
    assert_int_equal(st.open_until_ms, T0 + 1210);
    assert_int_equal(st.retry_after_ms, 910);
    assert_int_equal(st.open_ms, 1000);
    assert_int_equal(st.calls, 6);                  /* kept while open */
    assert_int_equal(st.failure_rate, 5000);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.trips, 1);
    assert_int_equal(st.stale, 0);
    assert_int_equal(st.clock_jumps, 0);
}


/* ------------------------------------------------------------------------ */
/* clock                                                                      */
/* ------------------------------------------------------------------------ */

/* A worker with a slightly older cached clock: time stands still. */
static void
test_small_step_back_is_clamped(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 - 500, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.retry_after_ms, 1000);
    assert_int_equal(aigov_breaker_state(&b, &c, T0 - 500),
                     AIGOV_BREAKER_OPEN);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(stats(&b, &c, T0).clock_jumps, 0);
}


/* A big step back keeps what remains of the open time. */
static void
test_big_step_back_rebases(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    c.open_duration_ms = 5000;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 2000, &p),
                     AIGOV_BREAKER_REJECT);

    /* 2 s after the trip the clock jumps back by 1001.5 s */
    assert_int_equal(aigov_breaker_allow(&b, &c, 500, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.retry_after_ms, 3000);
    assert_int_equal(stats(&b, &c, 500).clock_jumps, 1);
    assert_null(aigov_breaker_verify(&b, &c));

    assert_int_equal(aigov_breaker_allow(&b, &c, 3500, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
}


/* One bogus time far ahead must not keep a breaker open for ages. */
static void
test_bogus_future_time_not_stuck(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_OPEN, UINT64_MAX - 10, 0);
    assert_int_equal(stats(&b, &c, UINT64_MAX - 10).retry_after_ms, 10);
    assert_null(aigov_breaker_verify(&b, &c));

    /* back to sane times: open for the little that was left */
    assert_int_equal(aigov_breaker_allow(&b, &c, T0, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(p.retry_after_ms, 10);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 10, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_null(aigov_breaker_verify(&b, &c));
}


/* Probe ages survive a rebase: the lost probe still times out. */
static void
test_step_back_keeps_probe_age(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 10, 50);
    c.half_open_probes = 1;
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 1000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 5000, &p),
                     AIGOV_BREAKER_REJECT);

    /* back by 100 s at +5 s: 6 s of the 10 s probe timeout remain */
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 5000 - 100000, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(stats(&b, &c, 0).changed_ms, T0 + 1000 - 100000);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 10999 - 100000, &p),
                     AIGOV_BREAKER_REJECT);
    assert_int_equal(aigov_breaker_allow(&b, &c, T0 + 11000 - 100000, &p),
                     AIGOV_BREAKER_ALLOW_PROBE);
}


static void
test_step_back_empties_time_window(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_time(10, 4, 50);
    aigov_breaker_init(&b);

    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 3);
    calls(&b, &c, T0 - 60000, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(stats(&b, &c, T0 - 60000).calls, 1);
    assert_int_equal(stats(&b, &c, T0 - 60000).clock_jumps, 1);
}


/* ------------------------------------------------------------------------ */
/* allow without the mutex                                                    */
/* ------------------------------------------------------------------------ */

/*
 * aigov_breaker_allow_closed() on b: when it lets the call through, allow()
 * on a copy gives the same permit and the same bytes (but seq, which only
 * mutating calls move); when it asks, b is untouched.
 */
static int
allow_closed(aigov_breaker_t *b, const aigov_breaker_conf_t *c, uint64_t now,
    aigov_breaker_permit_t *p)
{
    int                     rc;
    aigov_breaker_t         copy;
    aigov_breaker_permit_t  q;

    copy = *b;

    rc = aigov_breaker_allow_closed(b, c, now, p);

    if (rc == AIGOV_BREAKER_AGAIN) {
        assert_memory_equal(&copy, b, sizeof(aigov_breaker_t));
        return rc;
    }

    assert_int_equal(rc, AIGOV_BREAKER_ALLOW);
    assert_int_equal(aigov_breaker_allow(&copy, c, now, &q),
                     AIGOV_BREAKER_ALLOW);
    assert_memory_equal(p, &q, sizeof(aigov_breaker_permit_t));

    copy.seq = b->seq;
    assert_memory_equal(&copy, b, sizeof(aigov_breaker_t));

    return rc;
}


/* A closed breaker at the latest time: the call is counted and recorded. */
static void
test_allow_closed_counts_like_allow(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 5, 50);
    aigov_breaker_init(&b);

    /* a fresh breaker is not laid out for c yet */
    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_AGAIN);

    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);

    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_ALLOW);
    assert_int_equal(p.kind, AIGOV_BREAKER_PERMIT_CALL);
    assert_int_equal(p.generation, b.generation);
    assert_int_equal(p.retry_after_ms, 0);
    assert_int_equal(stats(&b, &c, T0).allowed, 2);

    assert_int_equal(aigov_breaker_record(&b, &c, T0, AIGOV_BREAKER_FAILURE,
                                          0, &p),
                     AIGOV_BREAKER_RECORDED);
    assert_int_equal(stats(&b, &c, T0).calls, 2);
    assert_int_equal(stats(&b, &c, T0).failures, 1);
    assert_null(aigov_breaker_verify(&b, &c));
}


/* Time standing still (or a little behind) only: a later time asks. */
static void
test_allow_closed_asks_when_time_moves(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c, t;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 5, 50);
    aigov_breaker_init(&b);
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);

    assert_int_equal(allow_closed(&b, &c, T0 + 1, &p), AIGOV_BREAKER_AGAIN);
    assert_int_equal(allow_closed(&b, &c, T0 - 5, &p), AIGOV_BREAKER_ALLOW);
    assert_int_equal(allow_closed(&b, &c, T0 - AIGOV_BREAKER_CLOCK_SLACK_MS,
                                  &p),
                     AIGOV_BREAKER_ALLOW);
    assert_int_equal(allow_closed(&b, &c,
                                  T0 - AIGOV_BREAKER_CLOCK_SLACK_MS - 1, &p),
                     AIGOV_BREAKER_AGAIN);

    /* a bogus far future is ahead, whatever "last - now" wraps around to */
    aigov_breaker_init(&b);
    calls(&b, &c, 5, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(allow_closed(&b, &c, UINT64_MAX - 5, &p),
                     AIGOV_BREAKER_AGAIN);

    /* a time window: the same */
    t = conf_time(5, 5, 50);
    aigov_breaker_init(&b);
    calls(&b, &t, T0 + 500, AIGOV_BREAKER_SUCCESS, 1);

    assert_int_equal(allow_closed(&b, &t, T0 + 500, &p), AIGOV_BREAKER_ALLOW);
    assert_int_equal(allow_closed(&b, &t, T0 + 501, &p), AIGOV_BREAKER_AGAIN);

    /* a window not aged to the latest time (never left so): allow() ages */
    b.w.time.epoch--;
    assert_int_equal(allow_closed(&b, &t, T0 + 500, &p), AIGOV_BREAKER_AGAIN);
}


/* Not CLOSED, or a change under way: allow() answers. */
static void
test_allow_closed_asks_unless_closed(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 5, 50);
    aigov_breaker_init(&b);

    trip(&b, &c, T0);
    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_AGAIN);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_HALF_OPEN, T0, 0);
    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_AGAIN);

    aigov_breaker_force(&b, &c, AIGOV_BREAKER_CLOSED, T0, 0);
    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_ALLOW);
    assert_int_equal(p.generation, b.generation);

    /* a mutating call in another worker between its two marks */
    b.seq |= 1;
    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_AGAIN);

    /* left odd by a worker that died there: the next change ends it */
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(b.seq & 1, 0);
    assert_int_equal(allow_closed(&b, &c, T0, &p), AIGOV_BREAKER_ALLOW);
}


/* A new shape (a reload) is for allow() to adopt. */
static void
test_allow_closed_asks_for_a_new_shape(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c, c2;
    aigov_breaker_permit_t  p;

    (void) state;

    c = conf_count(10, 5, 50);
    aigov_breaker_init(&b);
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);

    c2 = c;
    c2.window_size = 20;
    assert_int_equal(allow_closed(&b, &c2, T0, &p), AIGOV_BREAKER_AGAIN);

    c2 = c;
    c2.half_open_probes = 4;
    assert_int_equal(allow_closed(&b, &c2, T0, &p), AIGOV_BREAKER_AGAIN);

    /* other parameters are no shape */
    c2 = c;
    c2.failure_rate_threshold = 20;
    assert_int_equal(allow_closed(&b, &c2, T0, &p), AIGOV_BREAKER_ALLOW);

    /* out of range: the clamped value is the shape, allow() knows */
    c2 = c;
    c2.window_size = 0;
    calls(&b, &c2, T0, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(allow_closed(&b, &c2, T0, &p), AIGOV_BREAKER_AGAIN);
    assert_int_equal(aigov_breaker_allow(&b, &c2, T0, &p),
                     AIGOV_BREAKER_ALLOW);
}


/* Random calls, times and transitions: allow_closed() is allow() or asks. */
static void
test_allow_closed_as_allow(void **state)
{
    int                     rc;
    unsigned                i, n, allowed, asked;
    uint64_t                now, r;
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c[2];
    aigov_breaker_permit_t  p[8], q;

    (void) state;

    c[0] = conf_count(10, 5, 50);
    c[0].consecutive_failures = 3;
    c[1] = conf_time(5, 3, 50);

    r = 88172645463325252ULL;
    allowed = 0;
    asked = 0;

    for (i = 0; i < 2; i++) {
        aigov_breaker_init(&b);
        now = T0;
        n = 0;

        while (allowed < 1000 * (i + 1) || asked < 1000 * (i + 1)) {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;

            now += (r >> 8) % 5 == 0 ? (r >> 12) % 700 : 0;

            if ((r >> 20) % 4) {
                rc = allow_closed(&b, &c[i], now - (r >> 24) % 3, &q);

                if (rc == AIGOV_BREAKER_AGAIN) {
                    asked++;
                    rc = aigov_breaker_allow(&b, &c[i], now, &q);
                }

                if (rc == AIGOV_BREAKER_ALLOW) {
                    allowed++;
                }

                if (rc != AIGOV_BREAKER_REJECT && n < 8) {
                    p[n++] = q;
                }

            } else if (n) {
                n--;
                (void) aigov_breaker_record(&b, &c[i], now,
                                            (r >> 28) % 3 == 0
                                            ? AIGOV_BREAKER_FAILURE
                                            : AIGOV_BREAKER_SUCCESS,
                                            0, &p[n]);
            }

            assert_null(aigov_breaker_verify(&b, &c[i]));
        }
    }
}


/* ------------------------------------------------------------------------ */
/* robustness                                                                 */
/* ------------------------------------------------------------------------ */

/* A reload with a new window shape empties the window, keeps the state. */
static void
test_conf_change_adopts_shape(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c, c2;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 4);

    c2 = conf_time(5, 10, 50);
    assert_int_equal(stats(&b, &c2, T0).calls, 0);
    calls(&b, &c2, T0, AIGOV_BREAKER_FAILURE, 1);
    assert_int_equal(stats(&b, &c2, T0).calls, 1);
    assert_null(aigov_breaker_verify(&b, &c2));

    /* open longer than the new maximum allows: clamped */
    c2.open_duration_max_ms = 0;
    c2.open_duration_ms = 100000;
    trip(&b, &c2, T0);
    c2.open_duration_ms = 2000;
    assert_int_equal(stats(&b, &c2, T0).retry_after_ms, 2000);
}


/* Fewer probes after a reload: slots out become stale, none over-used. */
static void
test_conf_change_probes(void **state)
{
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c, c2;
    aigov_breaker_permit_t  p[3], q;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    trip(&b, &c, T0);

    aigov_breaker_allow(&b, &c, T0 + 1000, &p[0]);
    aigov_breaker_allow(&b, &c, T0 + 1000, &p[1]);
    aigov_breaker_allow(&b, &c, T0 + 1000, &p[2]);

    c2 = c;
    c2.half_open_probes = 1;

    assert_int_equal(aigov_breaker_record(&b, &c2, T0 + 1001,
                                          AIGOV_BREAKER_SUCCESS, 1, &p[2]),
                     AIGOV_BREAKER_STALE);
    assert_int_equal(aigov_breaker_allow(&b, &c2, T0 + 1002, &q),
                     AIGOV_BREAKER_ALLOW_PROBE);
    assert_int_equal(aigov_breaker_allow(&b, &c2, T0 + 1002, &p[0]),
                     AIGOV_BREAKER_REJECT);
    assert_null(aigov_breaker_verify(&b, &c2));
}


/* An unchecked configuration may be silly, never unsafe. */
static void
test_unchecked_conf_is_memory_safe(void **state)
{
    unsigned                i;
    aigov_breaker_t         b;
    aigov_breaker_conf_t    c;
    aigov_breaker_permit_t  p;

    (void) state;

    memset(&c, 0, sizeof(c));
    c.window_size = 100000;
    c.half_open_probes = 1000;
    c.window_type = 9;
    aigov_breaker_init(&b);

    for (i = 0; i < 3000; i++) {
        if (aigov_breaker_allow(&b, &c, T0 + i, &p) != AIGOV_BREAKER_REJECT) {
            aigov_breaker_record(&b, &c, T0 + i, (int) (i % 4), i, &p);
        }

        assert_null(aigov_breaker_verify(&b, &c));
    }

    memset(&c, 0xff, sizeof(c));
    for (i = 0; i < 300; i++) {
        if (aigov_breaker_allow(&b, &c, T0 + i, &p) != AIGOV_BREAKER_REJECT) {
            aigov_breaker_record(&b, &c, T0 + i, AIGOV_BREAKER_FAILURE, i, &p);
        }
    }

    assert_null(aigov_breaker_verify(&b, &c));
    aigov_breaker_record(&b, &c, T0, AIGOV_BREAKER_FAILURE, 0, NULL);
}


static void
test_verify_detects_corruption(void **state)
{
    aigov_breaker_t       b;
    aigov_breaker_conf_t  c;

    (void) state;

    c = conf_count(10, 10, 50);
    aigov_breaker_init(&b);
    calls(&b, &c, T0, AIGOV_BREAKER_FAILURE, 2);

    b.w.ring.fail[0] ^= 1;
    assert_string_equal(aigov_breaker_verify(&b, &c),
                        "count window totals do not match the ring");
    b.w.ring.fail[0] ^= 1;

    b.failures++;
    assert_string_equal(aigov_breaker_verify(&b, &c),
                        "more failures or slow calls than calls");
    b.failures--;

    b.state = 7;
    assert_string_equal(aigov_breaker_verify(&b, &c), "invalid state");

    /* the next call starts again from CLOSED rather than guess */
    calls(&b, &c, T0, AIGOV_BREAKER_SUCCESS, 1);
    assert_int_equal(aigov_breaker_state(&b, &c, T0), AIGOV_BREAKER_CLOSED);
}


static void
test_names(void **state)
{
    (void) state;

    assert_string_equal(aigov_breaker_state_name(AIGOV_BREAKER_HALF_OPEN),
                        "half_open");
    assert_string_equal(aigov_breaker_state_name(9), "unknown");
    assert_string_equal(aigov_breaker_event_name(AIGOV_BREAKER_REOPENED),
                        "reopened");
    assert_string_equal(aigov_breaker_reason_name(
                            AIGOV_BREAKER_REASON_CONSECUTIVE),
                        "consecutive_failures");
}


int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_defaults_are_valid),
        cmocka_unit_test(test_conf_window_errors),
        cmocka_unit_test(test_conf_threshold_errors),
        cmocka_unit_test(test_conf_open_errors),
        cmocka_unit_test(test_conf_probe_errors),
        cmocka_unit_test(test_conf_classifier_errors),

        cmocka_unit_test(test_classify_default_statuses),
        cmocka_unit_test(test_classify_default_upstream_errors),
        cmocka_unit_test(test_classify_default_cut),
        cmocka_unit_test(test_classify_no_status_is_ignored),
        cmocka_unit_test(test_classify_parsed_list),
        cmocka_unit_test(test_classify_status_overrides_class),
        cmocka_unit_test(test_classify_error_shorthand),
        cmocka_unit_test(test_classify_error_before_status),
        cmocka_unit_test(test_classify_cut),
        cmocka_unit_test(test_classify_whitespace_and_case),
        cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_parse_unknown),
        cmocka_unit_test(test_parse_status_range),
        cmocka_unit_test(test_parse_duplicates),
        cmocka_unit_test(test_parse_conflicts),
        cmocka_unit_test(test_parse_lone_bang),
        cmocka_unit_test(test_parse_message_escapes_and_truncates),
        cmocka_unit_test(test_parse_error_buffer),
        cmocka_unit_test(test_format_canonical),
        cmocka_unit_test(test_format_errors_and_cut),
        cmocka_unit_test(test_format_folds_full_class),
        cmocka_unit_test(test_format_truncates),

        cmocka_unit_test(test_zero_breaker_is_closed),
        cmocka_unit_test(test_trips_at_exactly_threshold),
        cmocka_unit_test(test_no_trip_just_below_threshold),
        cmocka_unit_test(test_no_trip_below_minimum_calls),
        cmocka_unit_test(test_minimum_calls_capped_at_count_window),
        cmocka_unit_test(test_slow_call_rate_trips),
        cmocka_unit_test(test_slow_failure_counts_twice),
        cmocka_unit_test(test_slow_duration_zero_is_off),
        cmocka_unit_test(test_consecutive_failures_trip),
        cmocka_unit_test(test_consecutive_reset_by_success_not_by_ignore),

        cmocka_unit_test(test_open_rejects_with_retry_after),
        cmocka_unit_test(test_lazy_half_open_at_expiry),
        cmocka_unit_test(test_late_outcome_after_trip_is_stale),

        cmocka_unit_test(test_probe_limit),
        cmocka_unit_test(test_probe_reject_retry_after_until_first_timeout),
        cmocka_unit_test(test_probes_success_closes),
        cmocka_unit_test(test_probes_judged_by_rate),
        cmocka_unit_test(test_slow_probes_reopen),
        cmocka_unit_test(test_reopen_backoff_grows_to_max),
        cmocka_unit_test(test_backoff_non_integer_multiplier),
        cmocka_unit_test(test_backoff_reset_after_close),
        cmocka_unit_test(test_ignored_probe_frees_slot),
        cmocka_unit_test(test_probe_recorded_twice_is_stale),
        cmocka_unit_test(test_lost_probe_freed_after_timeout),

        cmocka_unit_test(test_count_window_wraps),
        cmocka_unit_test(test_count_window_largest),
        cmocka_unit_test(test_time_window_buckets_expire),
        cmocka_unit_test(test_time_window_long_gap_empties),
        cmocka_unit_test(test_time_window_trips_across_buckets),

        cmocka_unit_test(test_force_open_durations),
        cmocka_unit_test(test_force_closed_resets),
        cmocka_unit_test(test_force_half_open_probes_now),
        cmocka_unit_test(test_remote_trip),
        cmocka_unit_test(test_stats),

        cmocka_unit_test(test_small_step_back_is_clamped),
        cmocka_unit_test(test_big_step_back_rebases),
        cmocka_unit_test(test_bogus_future_time_not_stuck),
        cmocka_unit_test(test_step_back_keeps_probe_age),
        cmocka_unit_test(test_step_back_empties_time_window),

        cmocka_unit_test(test_allow_closed_counts_like_allow),
        cmocka_unit_test(test_allow_closed_asks_when_time_moves),
        cmocka_unit_test(test_allow_closed_asks_unless_closed),
        cmocka_unit_test(test_allow_closed_asks_for_a_new_shape),
        cmocka_unit_test(test_allow_closed_as_allow),

        cmocka_unit_test(test_conf_change_adopts_shape),
        cmocka_unit_test(test_conf_change_probes),
        cmocka_unit_test(test_unchecked_conf_is_memory_safe),
        cmocka_unit_test(test_verify_detects_corruption),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
