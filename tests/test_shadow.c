/*
 * ngx_aigov: unit tests for the shadow traffic helpers
 * (include/aigov_shadow.h, ngx_aigov_module/aigov_shadow.c): the HTTP/1.x
 * response reader, JSON paths and JSON agreement.  cmocka; one behaviour
 * per test.
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
#include <jansson.h>

#include "aigov_shadow.h"


#define S(lit)  (lit), (sizeof(lit) - 1)


static aigov_http_resp_t *
resp_new(size_t max_body)
{
    aigov_http_resp_t  *r;

    r = malloc(sizeof(aigov_http_resp_t));
    assert_non_null(r);
    aigov_http_resp_init(r, max_body, 0);

    return r;
}


static void
resp_del(aigov_http_resp_t *r)
{
    aigov_http_resp_free(r);
    free(r);
}


/* feeds the text whole, then byte by byte into a second reader */
static int
feed_both_ways(const char *text, size_t len, size_t max_body,
    aigov_http_resp_t **whole, aigov_http_resp_t **bytes)
{
    int     rc1, rc2;
    size_t  i;

    *whole = resp_new(max_body);
    *bytes = resp_new(max_body);

    rc1 = aigov_http_resp_feed(*whole, text, len);

    rc2 = AIGOV_HTTP_AGAIN;
    for (i = 0; i < len && rc2 == AIGOV_HTTP_AGAIN; i++) {
        rc2 = aigov_http_resp_feed(*bytes, text + i, 1);
    }

    assert_int_equal(rc1, rc2);
    assert_int_equal((*whole)->status, (*bytes)->status);
    assert_int_equal((*whole)->body_len, (*bytes)->body_len);

    if ((*whole)->body_len) {
        assert_memory_equal((*whole)->body, (*bytes)->body,
                            (*whole)->body_len);
    }

    return rc1;
}


static void
test_http_content_length(void **state)
{
    aigov_http_resp_t  *a, *b;

    (void) state;

    static const char  text[] =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        "Content-Length: 11\r\n\r\n{\"a\":12345}trailing junk";

    assert_int_equal(feed_both_ways(S(text), 1024, &a, &b), AIGOV_HTTP_DONE);
    assert_int_equal(a->status, 200);
    assert_int_equal(a->content_length, 11);
    assert_int_equal(a->body_len, 11);
    assert_memory_equal(a->body, "{\"a\":12345}", 11);
    assert_false(a->truncated);
    assert_false(a->encoded);

    resp_del(a);
    resp_del(b);
}


static void
test_http_chunked(void **state)
{
    aigov_http_resp_t  *a, *b;

    (void) state;

    static const char  text[] =
        "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
        "Content-Length: 999\r\n\r\n"
        "4\r\n{\"a\"\r\n3;ext=1\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n";

    assert_int_equal(feed_both_ways(S(text), 1024, &a, &b), AIGOV_HTTP_DONE);
    assert_int_equal(a->status, 201);
    assert_true(a->chunked);
    assert_int_equal(a->body_len, 7);
    assert_memory_equal(a->body, "{\"a\":1}", 7);

    resp_del(a);
    resp_del(b);
}


static void
test_http_close_delimited(void **state)
{
    aigov_http_resp_t  *r;

    (void) state;

    r = resp_new(1024);

    assert_int_equal(aigov_http_resp_feed(r, S("HTTP/1.0 200 OK\n\nabc")),
                     AIGOV_HTTP_AGAIN);
    assert_int_equal(aigov_http_resp_feed(r, S("def")), AIGOV_HTTP_AGAIN);
    assert_int_equal(aigov_http_resp_eof(r), AIGOV_HTTP_DONE);
    assert_int_equal(r->body_len, 6);
    assert_memory_equal(r->body, "abcdef", 6);

    resp_del(r);
}


static void
test_http_truncated_body_counted(void **state)
{
    aigov_http_resp_t  *a, *b;

    (void) state;

    static const char  text[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789";

    assert_int_equal(feed_both_ways(S(text), 4, &a, &b), AIGOV_HTTP_DONE);
    assert_true(a->truncated);
    assert_int_equal(a->body_len, 4);
    assert_int_equal(a->body_total, 10);
    assert_memory_equal(a->body, "0123", 4);

    resp_del(a);
    resp_del(b);
}


static void
test_http_no_body_statuses(void **state)
{
    aigov_http_resp_t  *r;

    (void) state;

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 204 No Content\r\n"
                           "Content-Length: 5\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_int_equal(r->status, 204);
    resp_del(r);

    r = malloc(sizeof(aigov_http_resp_t));
    assert_non_null(r);
    aigov_http_resp_init(r, 64, 1);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    resp_del(r);

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_int_equal(r->body_len, 0);
    resp_del(r);
}


static void
test_http_interim_skipped(void **state)
{
    aigov_http_resp_t  *a, *b;

    (void) state;

    static const char  text[] =
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 503 Busy\r\nContent-Length: 2\r\n\r\n{}";

    assert_int_equal(feed_both_ways(S(text), 64, &a, &b), AIGOV_HTTP_DONE);
    assert_int_equal(a->status, 503);
    assert_int_equal(a->body_len, 2);

    resp_del(a);
    resp_del(b);
}


static void
test_http_encoded(void **state)
{
    aigov_http_resp_t  *r;

    (void) state;

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n"
                           "Content-Length: 1\r\n\r\nx")),
                     AIGOV_HTTP_DONE);
    assert_true(r->encoded);
    resp_del(r);

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\n"
                           "Content-Length: 1\r\n\r\nx")),
                     AIGOV_HTTP_DONE);
    assert_false(r->encoded);
    resp_del(r);
}


static void
test_http_keepalive(void **state)
{
    aigov_http_resp_t  *r;

    (void) state;

    /* HTTP/1.1, framed by length: reusable */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")),
                     AIGOV_HTTP_DONE);
    assert_int_equal(r->version, 11);
    assert_true(aigov_http_resp_keepalive(r));
    resp_del(r);

    /* chunked too */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                           "\r\n2\r\n{}\r\n0\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_true(aigov_http_resp_keepalive(r));
    resp_del(r);

    /* "Connection: close", among other tokens */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nConnection: Upgrade, Close \r\n"
                           "Content-Length: 0\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_true(r->conn_close);
    assert_false(aigov_http_resp_keepalive(r));
    resp_del(r);

    /* HTTP/1.0: only with keep-alive */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_int_equal(r->version, 10);
    assert_false(aigov_http_resp_keepalive(r));
    resp_del(r);

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                           "Content-Length: 0\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_true(aigov_http_resp_keepalive(r));
    resp_del(r);

    /* bytes after the response, in the same read or a later one */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}X")),
                     AIGOV_HTTP_DONE);
    assert_true(r->extra);
    assert_false(aigov_http_resp_keepalive(r));
    resp_del(r);

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 204 No\r\n\r\n")),
                     AIGOV_HTTP_DONE);
    assert_true(aigov_http_resp_keepalive(r));
    assert_int_equal(aigov_http_resp_feed(r, S("HTTP")), AIGOV_HTTP_DONE);
    assert_false(aigov_http_resp_keepalive(r));
    resp_del(r);

    /* close-delimited: never */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r, S("HTTP/1.1 200 OK\r\n\r\nab")),
                     AIGOV_HTTP_AGAIN);
    assert_int_equal(aigov_http_resp_eof(r), AIGOV_HTTP_DONE);
    assert_false(aigov_http_resp_keepalive(r));
    resp_del(r);
}


static void
test_http_garbage(void **state)
{
    size_t              i;
    aigov_http_resp_t  *r;

    (void) state;

    static const struct {
        const char  *s;
        size_t       len;
    }  bad[] = {
        { S("<html>this is {not json at all") },
        { S("garbage\r\n\r\n") },
        { S("HTTP/2 200\r\n\r\n") },
        { S("HTTP/1.1 20 OK\r\n\r\n") },
        { S("HTTP/1.1 200OK\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\n folded: x\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
            "Content-Length: 2\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "zz\r\n") },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "1 x\r\n") },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "1\r\nab\r\n") },
        { S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            "fffffffffffffffffff\r\n") },
        { S("HTTP/1.1 101 Switching Protocols\r\n\r\n") },
        { S("HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n") },
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = resp_new(64);

        if (aigov_http_resp_feed(r, bad[i].s, bad[i].len)
            != AIGOV_HTTP_ERROR)
        {
            fail_msg("accepted bad response #%zu: %s", i, bad[i].s);
        }

        assert_non_null(r->error);
        /* once failed, stays failed */
        assert_int_equal(aigov_http_resp_feed(r, S("HTTP/1.1 200 OK\r\n")),
                         AIGOV_HTTP_ERROR);
        resp_del(r);
    }
}


static void
test_http_eof_early(void **state)
{
    aigov_http_resp_t  *r;

    (void) state;

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_eof(r), AIGOV_HTTP_ERROR);
    assert_string_equal(r->error, "connection closed without a response");
    resp_del(r);

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r,
                         S("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")),
                     AIGOV_HTTP_AGAIN);
    assert_int_equal(aigov_http_resp_eof(r), AIGOV_HTTP_ERROR);
    resp_del(r);
}


static void
test_http_limits(void **state)
{
    char               *big;
    size_t              i;
    aigov_http_resp_t  *r;

    (void) state;

    /* a header line over AIGOV_HTTP_MAX_LINE */
    big = malloc(AIGOV_HTTP_MAX_LINE + 64);
    assert_non_null(big);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'a', AIGOV_HTTP_MAX_LINE);

    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r, S("HTTP/1.1 200 OK\r\n")),
                     AIGOV_HTTP_AGAIN);
    assert_int_equal(aigov_http_resp_feed(r, big, AIGOV_HTTP_MAX_LINE + 7),
                     AIGOV_HTTP_ERROR);
    resp_del(r);

    /* many header lines over AIGOV_HTTP_MAX_HEADER in total */
    r = resp_new(64);
    assert_int_equal(aigov_http_resp_feed(r, S("HTTP/1.1 200 OK\r\n")),
                     AIGOV_HTTP_AGAIN);

    memcpy(big, "X-Many: ", 8);
    memset(big + 8, 'b', 1000);
    memcpy(big + 1008, "\r\n", 2);

    for (i = 0; i < 100; i++) {
        if (aigov_http_resp_feed(r, big, 1010) == AIGOV_HTTP_ERROR) {
            break;
        }
    }

    assert_true(i < 100);
    assert_string_equal(r->error, "response header too large");
    resp_del(r);

    free(big);
}


/* ---- JSON paths ---------------------------------------------------------- */

static void
test_jpath_parse(void **state)
{
    aigov_jpath_t  p;

    (void) state;

    assert_int_equal(aigov_jpath_parse(S("$"), &p, NULL, 0), AIGOV_OK);
    assert_int_equal(p.n, 0);

    assert_int_equal(aigov_jpath_parse(S("$.choices[0].message.content"),
                                       &p, NULL, 0), AIGOV_OK);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.step[0].type, AIGOV_JPATH_KEY);
    assert_int_equal(p.step[0].key.len, 7);
    assert_memory_equal(p.step[0].key.data, "choices", 7);
    assert_int_equal(p.step[1].type, AIGOV_JPATH_INDEX);
    assert_int_equal(p.step[1].index, 0);
    assert_memory_equal(p.step[3].key.data, "content", 7);

    assert_int_equal(aigov_jpath_parse(S("$['a.b'][\"c]d\"][12]"),
                                       &p, NULL, 0), AIGOV_OK);
    assert_int_equal(p.n, 3);
    assert_int_equal(p.step[0].key.len, 3);
    assert_memory_equal(p.step[0].key.data, "a.b", 3);
    assert_memory_equal(p.step[1].key.data, "c]d", 3);
    assert_int_equal(p.step[2].index, 12);
}


static void
test_jpath_parse_errors(void **state)
{
    char           err[128];
    size_t         i;
    aigov_jpath_t  p;

    (void) state;

    static const char  *bad[] = {
        "", "a.b", ".a", "$.", "$..a", "$a", "$[", "$[]", "$[x]", "$[1",
        "$['a'", "$['a]", "$[1234567890]", "$.a b", "$[-1]",
        "$.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q",
    };

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';

        if (aigov_jpath_parse(bad[i], strlen(bad[i]), &p, err, sizeof(err))
            != AIGOV_ERROR)
        {
            fail_msg("accepted bad path \"%s\"", bad[i]);
        }

        assert_true(err[0] != '\0');
    }
}


static void
test_jpath_get(void **state)
{
    json_t         *doc, *v;
    aigov_jpath_t   p;

    (void) state;

    doc = json_loads("{\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
                     "\"usage\":{\"total_tokens\":7},\"a.b\":1}", 0, NULL);
    assert_non_null(doc);

    assert_int_equal(aigov_jpath_parse(S("$.choices[0].message.content"),
                                       &p, NULL, 0), AIGOV_OK);
    v = aigov_jpath_get(doc, &p);
    assert_non_null(v);
    assert_string_equal(json_string_value(v), "hi");

    assert_int_equal(aigov_jpath_parse(S("$.usage.total_tokens"), &p, NULL, 0),
                     AIGOV_OK);
    assert_int_equal(json_integer_value(aigov_jpath_get(doc, &p)), 7);

    assert_int_equal(aigov_jpath_parse(S("$['a.b']"), &p, NULL, 0), AIGOV_OK);
    assert_int_equal(json_integer_value(aigov_jpath_get(doc, &p)), 1);

    /* missing and wrong types */
    assert_int_equal(aigov_jpath_parse(S("$.choices[1]"), &p, NULL, 0),
                     AIGOV_OK);
    assert_null(aigov_jpath_get(doc, &p));
    assert_int_equal(aigov_jpath_parse(S("$.usage[0]"), &p, NULL, 0),
                     AIGOV_OK);
    assert_null(aigov_jpath_get(doc, &p));
    assert_int_equal(aigov_jpath_parse(S("$.choices.x"), &p, NULL, 0),
                     AIGOV_OK);
    assert_null(aigov_jpath_get(doc, &p));

    assert_int_equal(aigov_jpath_parse(S("$"), &p, NULL, 0), AIGOV_OK);
    assert_ptr_equal(aigov_jpath_get(doc, &p), doc);

    json_decref(doc);
}


/* ---- agreement ----------------------------------------------------------- */

static int
agree(const char *a, const char *b, double tol)
{
    int      rc;
    json_t  *ja, *jb;

    ja = json_loads(a, JSON_DECODE_ANY, NULL);
    jb = json_loads(b, JSON_DECODE_ANY, NULL);
    assert_non_null(ja);
    assert_non_null(jb);

    rc = aigov_json_agree(ja, jb, tol);

    /* symmetric */
    assert_int_equal(rc, aigov_json_agree(jb, ja, tol));

    json_decref(ja);
    json_decref(jb);

    return rc;
}


static void
test_agree_numbers(void **state)
{
    (void) state;

    assert_true(agree("7", "7", 0));
    assert_false(agree("7", "8", 0));
    assert_true(agree("7", "7.0", 0));
    assert_true(agree("100", "101", 0.01));
    assert_false(agree("100", "102", 0.01));
    /* absolute below 1 */
    assert_true(agree("0", "0.009", 0.01));
    assert_false(agree("0", "0.02", 0.01));
    assert_true(agree("-5", "-5.04", 0.01));
    /* integers beyond double precision, exact */
    assert_false(agree("9007199254740993", "9007199254740992", 0));
}


static void
test_agree_other_types(void **state)
{
    (void) state;

    assert_true(agree("\"hi\"", "\"hi\"", 0.5));
    assert_false(agree("\"hi\"", "\"Hi\"", 0.5));
    assert_false(agree("\"1\"", "1", 0.5));
    assert_true(agree("null", "null", 0));
    assert_false(agree("true", "false", 0));
    assert_true(agree("{\"a\":[1,2,{\"b\":3}],\"c\":\"x\"}",
                      "{\"c\":\"x\",\"a\":[1,2,{\"b\":3.001}]}", 0.01));
    assert_false(agree("{\"a\":1}", "{\"a\":1,\"b\":2}", 0));
    assert_false(agree("{\"a\":1,\"c\":2}", "{\"a\":1,\"b\":2}", 0));
    assert_false(agree("[1,2]", "[1,2,3]", 0));
    assert_false(agree("[1,2]", "[2,1]", 0));
}


static void
test_agree_missing(void **state)
{
    json_t  *one;

    (void) state;

    one = json_integer(1);

    assert_true(aigov_json_agree(NULL, NULL, 0));
    assert_false(aigov_json_agree(one, NULL, 0));
    assert_false(aigov_json_agree(NULL, one, 0));

    json_decref(one);
}


static void
test_agree_deep(void **state)
{
    int      i;
    json_t  *a, *b, *t;

    (void) state;

    a = json_array();
    b = json_array();

    for (i = 0; i < 100; i++) {
        t = json_array();
        json_array_append_new(t, a);
        a = t;
        t = json_array();
        json_array_append_new(t, b);
        b = t;
    }

    /* too deep to compare: never "agree" by accident, never crash */
    assert_false(aigov_json_agree(a, b, 0));

    json_decref(a);
    json_decref(b);
}


static void
test_tolerance(void **state)
{
    double  d;

    (void) state;

    assert_int_equal(aigov_parse_tolerance(S("0.01"), &d), AIGOV_OK);
    assert_true(d == 0.01);
    assert_int_equal(aigov_parse_tolerance(S("0"), &d), AIGOV_OK);
    assert_true(d == 0);
    assert_int_equal(aigov_parse_tolerance(S("1e-3"), &d), AIGOV_OK);
    assert_true(d == 0.001);
    assert_int_equal(aigov_parse_tolerance(S(".5"), &d), AIGOV_OK);

    assert_int_equal(aigov_parse_tolerance(S(""), &d), AIGOV_ERROR);
    assert_int_equal(aigov_parse_tolerance(S("-1"), &d), AIGOV_ERROR);
    assert_int_equal(aigov_parse_tolerance(S("1%"), &d), AIGOV_ERROR);
    assert_int_equal(aigov_parse_tolerance(S("abc"), &d), AIGOV_ERROR);
    assert_int_equal(aigov_parse_tolerance(S("1e999"), &d), AIGOV_ERROR);
    assert_int_equal(aigov_parse_tolerance(S("0.1.2"), &d), AIGOV_ERROR);
    assert_int_equal(aigov_parse_tolerance(S("inf"), &d), AIGOV_ERROR);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        /* HTTP responses */
        cmocka_unit_test(test_http_content_length),
        cmocka_unit_test(test_http_chunked),
        cmocka_unit_test(test_http_close_delimited),
        cmocka_unit_test(test_http_truncated_body_counted),
        cmocka_unit_test(test_http_no_body_statuses),
        cmocka_unit_test(test_http_interim_skipped),
        cmocka_unit_test(test_http_encoded),
        cmocka_unit_test(test_http_keepalive),
        cmocka_unit_test(test_http_garbage),
        cmocka_unit_test(test_http_eof_early),
        cmocka_unit_test(test_http_limits),

        /* JSON paths */
        cmocka_unit_test(test_jpath_parse),
        cmocka_unit_test(test_jpath_parse_errors),
        cmocka_unit_test(test_jpath_get),

        /* agreement */
        cmocka_unit_test(test_agree_numbers),
        cmocka_unit_test(test_agree_other_types),
        cmocka_unit_test(test_agree_missing),
        cmocka_unit_test(test_agree_deep),
        cmocka_unit_test(test_tolerance),
    };

    return cmocka_run_group_tests_name("aigov_shadow", tests, NULL, NULL);
}
