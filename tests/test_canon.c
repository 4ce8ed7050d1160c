/*
 * ngx_aigov: unit tests for canonical JSON (include/aigov_canon.h,
 * ngx_aigov_module/aigov_canon.c).  cmocka; one behaviour per test.
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

#include "aigov_canon.h"


/* canonical form of a C string, or NULL; *rc gets the result */
static char *
canon(const char *in, int *rc)
{
    char    err[128];
    size_t  len;

    return aigov_canon_dup(in, strlen(in), &len, rc, err, sizeof(err));
}


static void
expect(const char *in, const char *want)
{
    int    rc;
    char  *out;

    out = canon(in, &rc);

    if (out == NULL) {
        fail_msg("\"%s\" was refused (%d), want \"%s\"", in, rc, want);
    }

    if (strcmp(out, want) != 0) {
        free(out);
        fail_msg("\"%s\" -> unexpected output, want \"%s\"", in, want);
    }

    free(out);
}


static void
expect_same(const char *a, const char *b)
{
    int    rc;
    char  *ca, *cb;

    ca = canon(a, &rc);
    assert_non_null(ca);
    cb = canon(b, &rc);
    assert_non_null(cb);

    assert_string_equal(ca, cb);

    free(ca);
    free(cb);
}


static void
expect_rc(const char *in, int want)
{
    int    rc;
    char  *out;

    rc = 12345;
    out = canon(in, &rc);

    if (out) {
        fail_msg("\"%s\" was accepted as \"%s\"", in, out);
    }

    assert_int_equal(rc, want);
}


/* whitespace and order */

static void
test_whitespace_dropped(void **state)
{
    (void) state;

    expect(" {\n\t\"a\" : [ 1 , 2 ] ,\r\n \"b\" : null } ",
           "{\"a\":[1,2],\"b\":null}");
}


static void
test_keys_sorted(void **state)
{
    (void) state;

    expect("{\"b\":1,\"a\":2,\"c\":3}", "{\"a\":2,\"b\":1,\"c\":3}");
}


static void
test_keys_sorted_nested(void **state)
{
    (void) state;

    expect("{\"z\":{\"y\":1,\"x\":[{\"d\":1,\"c\":2}]},\"a\":true}",
           "{\"a\":true,\"z\":{\"x\":[{\"c\":2,\"d\":1}],\"y\":1}}");
}


static void
test_keys_prefix_shorter_first(void **state)
{
    (void) state;

    expect("{\"ab\":1,\"a\":2,\"\":3}", "{\"\":3,\"a\":2,\"ab\":1}");
}


static void
test_keys_bytewise(void **state)
{
    (void) state;

    /* 'B' (0x42) < 'a' (0x61) < U+00E9 (0xc3 0xa9) */
    expect("{\"\\u00e9\":1,\"a\":2,\"B\":3}",
           "{\"B\":3,\"a\":2,\"\xc3\xa9\":1}");
}


static void
test_array_order_kept(void **state)
{
    (void) state;

    expect("[3,1,2]", "[3,1,2]");
}


static void
test_equivalent_documents(void **state)
{
    (void) state;

    expect_same("{\"model\":\"chat\",\"temperature\":1.0,"
                "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                "{ \"messages\" : [ { \"content\" : \"hi\", "
                "\"role\" : \"user\" } ], \"temperature\" : 1, "
                "\"model\" : \"chat\" }");
}


static void
test_scalar_roots(void **state)
{
    (void) state;

    expect("  \"x\" ", "\"x\"");
    expect("true", "true");
    expect("false", "false");
    expect("null", "null");
    expect("-12.50", "-12.5");
    expect("{}", "{}");
    expect("[ ]", "[]");
}


/* numbers */

static void
test_numbers_integers_and_reals_agree(void **state)
{
    (void) state;

    expect("1", "1");
    expect("1.0", "1");
    expect("1e0", "1");
    expect("1E+0", "1");
    expect("10e-1", "1");
    expect("0.1e1", "1");
    expect("100", "100");
    expect("1e2", "100");
    expect("1.00e2", "100");
}


static void
test_numbers_zero(void **state)
{
    (void) state;

    expect("0", "0");
    expect("-0", "0");
    expect("0.0", "0");
    expect("-0.000e-5", "0");
    expect("0e999999999999999", "0");
}


static void
test_numbers_fractions(void **state)
{
    (void) state;

    expect("12.5", "12.5");
    expect("0.5", "0.5");
    expect("-0.25", "-0.25");
    expect("0.000001", "0.000001");
    expect("1e-6", "0.000001");
    expect("0.0000001", "1e-7");
    expect("1.5e-7", "1.5e-7");
    expect("123.456e1", "1234.56");
}


static void
test_numbers_large(void **state)
{
    (void) state;

    expect("1e20", "100000000000000000000");
    expect("1e21", "1e+21");
    expect("123456789012345678901", "123456789012345678901");
    expect("1234567890123456789012", "1.234567890123456789012e+21");
    expect("-2.5e30", "-2.5e+30");
}


static void
test_numbers_exact_not_double(void **state)
{
    (void) state;

    int    rc;
    char  *a, *b;

    /* equal as doubles, different as decimals: different keys */
    a = canon("0.1", &rc);
    b = canon("0.1000000000000000055511151231257827", &rc);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_not_equal(a, b);
    free(a);
    free(b);

    a = canon("9007199254740993", &rc);
    b = canon("9007199254740992", &rc);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, "9007199254740993");
    assert_string_not_equal(a, b);
    free(a);
    free(b);
}


static void
test_numbers_exponent_range(void **state)
{
    (void) state;

    expect("1e999999999", "1e+999999999");
    expect("1e-999999999", "1e-999999999");
    expect_rc("1e1000000000", AIGOV_CANON_RANGE);
    expect_rc("[1e-99999999999999999999]", AIGOV_CANON_RANGE);
    expect("1e0000000000000000000005", "100000");
    /* bounded on the output's exponent, so every output parses again */
    expect_rc("11e999999999", AIGOV_CANON_RANGE);
    expect("0.11e999999999", "1.1e+999999998");
    expect_rc("0.01e-999999998", AIGOV_CANON_RANGE);
}


static void
test_numbers_invalid(void **state)
{
    (void) state;

    expect_rc("01", AIGOV_CANON_INVALID);
    expect_rc("-", AIGOV_CANON_INVALID);
    expect_rc("1.", AIGOV_CANON_INVALID);
    expect_rc(".5", AIGOV_CANON_INVALID);
    expect_rc("1e", AIGOV_CANON_INVALID);
    expect_rc("1e+", AIGOV_CANON_INVALID);
    expect_rc("+1", AIGOV_CANON_INVALID);
    expect_rc("0x10", AIGOV_CANON_INVALID);
    expect_rc("NaN", AIGOV_CANON_INVALID);
    expect_rc("Infinity", AIGOV_CANON_INVALID);
    expect_rc("-Infinity", AIGOV_CANON_INVALID);
}


/* strings */

static void
test_strings_minimal_escapes(void **state)
{
    (void) state;

    expect("\"\\/\"", "\"/\"");
    expect("\"\\u0041\\u00e9\"", "\"A\xc3\xa9\"");
    expect("\"a\\\"b\\\\c\"", "\"a\\\"b\\\\c\"");
    expect("\"\\b\\f\\n\\r\\t\"", "\"\\b\\f\\n\\r\\t\"");
    expect("\"\\u0008\\u000A\"", "\"\\b\\n\"");
    expect("\"\\u0001\\u001F\"", "\"\\u0001\\u001f\"");
    expect("\"\\u007f\"", "\"\x7f\"");
    expect("\"\\u2028\"", "\"\xe2\x80\xa8\"");
}


static void
test_strings_nul_escape(void **state)
{
    (void) state;

    int     rc;
    char   *out;
    size_t  len;

    out = aigov_canon_dup("[\"a\\u0000b\"]", 12, &len, &rc, NULL, 0);
    assert_non_null(out);
    assert_int_equal(len, 12);
    assert_memory_equal(out, "[\"a\\u0000b\"]", 12);
    free(out);
}


static void
test_strings_raw_utf8_kept(void **state)
{
    (void) state;

    expect("\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"",
           "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80\"");
    expect_same("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\"");
    expect_same("\"\\u20AC\"", "\"\xe2\x82\xac\"");
}


static void
test_strings_invalid_utf8(void **state)
{
    (void) state;

    expect_rc("\"\xff\"", AIGOV_CANON_INVALID);
    expect_rc("\"\xc0\xaf\"", AIGOV_CANON_INVALID);           /* overlong */
    expect_rc("\"\xe0\x80\xaf\"", AIGOV_CANON_INVALID);       /* overlong */
    expect_rc("\"\xed\xa0\x80\"", AIGOV_CANON_INVALID);       /* surrogate */
    expect_rc("\"\xf4\x90\x80\x80\"", AIGOV_CANON_INVALID);   /* > 10FFFF */
    expect_rc("\"\xc3\"", AIGOV_CANON_INVALID);               /* truncated */
    expect_rc("\"\xe2\x82\"", AIGOV_CANON_INVALID);
    expect_rc("\"\x80\"", AIGOV_CANON_INVALID);
}


static void
test_strings_invalid_escapes(void **state)
{
    (void) state;

    expect_rc("\"\\x\"", AIGOV_CANON_INVALID);
    expect_rc("\"\\u12\"", AIGOV_CANON_INVALID);
    expect_rc("\"\\u12g4\"", AIGOV_CANON_INVALID);
    expect_rc("\"\\ud800\"", AIGOV_CANON_INVALID);
    expect_rc("\"\\ud800\\u0041\"", AIGOV_CANON_INVALID);
    expect_rc("\"\\udc00\"", AIGOV_CANON_INVALID);
    expect_rc("\"\\", AIGOV_CANON_INVALID);
    expect_rc("\"abc", AIGOV_CANON_INVALID);
    expect_rc("\"a\nb\"", AIGOV_CANON_INVALID);
    expect_rc("\"a\tb\"", AIGOV_CANON_INVALID);
}


static void
test_keys_unescaped_before_sort_and_dup(void **state)
{
    (void) state;

    expect("{\"\\u0062\":1,\"a\":2}", "{\"a\":2,\"b\":1}");
    expect_rc("{\"a\":1,\"\\u0061\":2}", AIGOV_CANON_INVALID);
}


/* structure */

static void
test_duplicate_keys_refused(void **state)
{
    (void) state;

    expect_rc("{\"a\":1,\"a\":1}", AIGOV_CANON_INVALID);
    expect_rc("{\"x\":{\"b\":1,\"c\":2,\"b\":3}}", AIGOV_CANON_INVALID);
    /* the same key in different objects is fine */
    expect("[{\"a\":1},{\"a\":2}]", "[{\"a\":1},{\"a\":2}]");
}


static void
test_invalid_structure(void **state)
{
    (void) state;

    expect_rc("", AIGOV_CANON_INVALID);
    expect_rc("   ", AIGOV_CANON_INVALID);
    expect_rc("{", AIGOV_CANON_INVALID);
    expect_rc("{\"a\"}", AIGOV_CANON_INVALID);
    expect_rc("{\"a\":}", AIGOV_CANON_INVALID);
    expect_rc("{\"a\":1,}", AIGOV_CANON_INVALID);
    expect_rc("{a:1}", AIGOV_CANON_INVALID);
    expect_rc("[1,]", AIGOV_CANON_INVALID);
    expect_rc("[1 2]", AIGOV_CANON_INVALID);
    expect_rc("{} {}", AIGOV_CANON_INVALID);
    expect_rc("1 x", AIGOV_CANON_INVALID);
    expect_rc("tru", AIGOV_CANON_INVALID);
    expect_rc("nul", AIGOV_CANON_INVALID);
    expect_rc("True", AIGOV_CANON_INVALID);
    expect_rc("\xef\xbb\xbf{}", AIGOV_CANON_INVALID);          /* BOM */
    expect_rc("<html>this is {not json at all", AIGOV_CANON_INVALID);
    expect_rc("{\"a\":1}\f", AIGOV_CANON_INVALID);
}


static void
test_embedded_nul_refused(void **state)
{
    (void) state;

    int     rc;
    char   *out;

    out = aigov_canon_dup("{}\0", 3, NULL, &rc, NULL, 0);
    assert_null(out);
    assert_int_equal(rc, AIGOV_CANON_INVALID);
}


static void
test_depth_limit(void **state)
{
    (void) state;

    int     rc;
    char   *in, *out;
    size_t  i, n;

    /* exactly the limit: accepted */
    n = AIGOV_CANON_MAX_DEPTH;
    in = malloc(2 * n + 1);
    assert_non_null(in);

    for (i = 0; i < n; i++) {
        in[i] = '[';
        in[2 * n - 1 - i] = ']';
    }

    out = aigov_canon_dup(in, 2 * n, NULL, &rc, NULL, 0);
    assert_non_null(out);
    assert_memory_equal(out, in, 2 * n);
    free(out);
    free(in);

    /* one more: refused, not a stack overflow */
    n = AIGOV_CANON_MAX_DEPTH + 1;
    in = malloc(2 * n);
    assert_non_null(in);

    for (i = 0; i < n; i++) {
        in[i] = '[';
        in[2 * n - 1 - i] = ']';
    }

    out = aigov_canon_dup(in, 2 * n, NULL, &rc, NULL, 0);
    assert_null(out);
    assert_int_equal(rc, AIGOV_CANON_TOO_DEEP);
    free(in);

    /* a huge unclosed nesting stops at the limit too */
    n = 100000;
    in = malloc(n);
    assert_non_null(in);
    memset(in, '{', n);
    out = aigov_canon_dup(in, n, NULL, &rc, NULL, 0);
    assert_null(out);
    assert_int_equal(rc, AIGOV_CANON_INVALID);
    free(in);

    in = malloc(n);
    assert_non_null(in);
    memset(in, '[', n);
    out = aigov_canon_dup(in, n, NULL, &rc, NULL, 0);
    assert_null(out);
    assert_int_equal(rc, AIGOV_CANON_TOO_DEEP);
    free(in);
}


static void
test_error_message(void **state)
{
    (void) state;

    int   rc;
    char  err[128];

    rc = aigov_canon("{\"a\" 1}", 7, NULL, NULL, err, sizeof(err));
    assert_int_equal(rc, AIGOV_CANON_INVALID);
    assert_string_equal(err, "invalid JSON at byte 5: expected ':'");

    rc = aigov_canon("{\"a\":1,\"a\":2}", 13, NULL, NULL, err, sizeof(err));
    assert_int_equal(rc, AIGOV_CANON_INVALID);
    assert_non_null(strstr(err, "duplicate key"));

    /* a tiny buffer is still terminated */
    rc = aigov_canon("x", 1, NULL, NULL, err, 4);
    assert_int_equal(rc, AIGOV_CANON_INVALID);
    assert_int_equal(strlen(err), 3);
}


/* output */

typedef struct {
    size_t  calls;
    size_t  bytes;
    size_t  max;
} sink_t;


static void
sink(void *data, const char *p, size_t len)
{
    sink_t  *s = data;

    (void) p;

    s->calls++;
    s->bytes += len;

    if (len > s->max) {
        s->max = len;
    }
}


static void
test_nothing_written_on_error(void **state)
{
    sink_t  s;

    (void) state;

    memset(&s, 0, sizeof(s));
    assert_int_equal(aigov_canon("{\"a\":[1,2,3],\"b\":", 17, sink, &s,
                                 NULL, 0),
                     AIGOV_CANON_INVALID);
    assert_int_equal(s.calls, 0);
}


static void
test_validate_only(void **state)
{
    (void) state;

    assert_int_equal(aigov_canon("{\"a\":1}", 7, NULL, NULL, NULL, 0),
                     AIGOV_CANON_OK);
    assert_int_equal(aigov_canon("{\"a\":1", 6, NULL, NULL, NULL, 0),
                     AIGOV_CANON_INVALID);
}


static void
test_large_document(void **state)
{
    (void) state;

    int     rc;
    char   *in, *out, *p;
    size_t  i, n, len;
    sink_t  s;

    /* 20000 members in reverse order: arena blocks and output chunks */
    n = 20000;
    in = malloc(n * 32 + 16);
    assert_non_null(in);

    p = in;
    *p++ = '{';
    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s\"k%05zu\" : %zu.0", i ? " , " : "", n - 1 - i, i);
    }
    *p++ = '}';
    len = p - in;

    memset(&s, 0, sizeof(s));
    rc = aigov_canon(in, len, sink, &s, NULL, 0);
    assert_int_equal(rc, AIGOV_CANON_OK);
    assert_true(s.calls > 1);
    assert_true(s.max <= 4096);

    out = aigov_canon_dup(in, len, &len, &rc, NULL, 0);
    assert_non_null(out);
    assert_int_equal(len, s.bytes);
    assert_memory_equal(out, "{\"k00000\":19999,\"k00001\":19998,", 31);
    assert_memory_equal(out + len - 11, "\"k19999\":0}", 11);
    free(out);
    free(in);
}


static void
test_idempotent(void **state)
{
    (void) state;

    int          rc, i;
    char        *a, *b;

    static const char  *docs[] = {
        "{\"b\":[1.50,{\"y\":\"\\u00e9\\n\",\"x\":-0}],\"a\":1e21}",
        "[\"\\ud83d\\ude00\",0.0000001,123456789012345678901234]",
        "{\"\":{\"\":{\"\":null}}}",
        NULL
    };

    for (i = 0; docs[i]; i++) {
        a = canon(docs[i], &rc);
        assert_non_null(a);
        b = canon(a, &rc);
        assert_non_null(b);
        assert_string_equal(a, b);
        free(a);
        free(b);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_whitespace_dropped),
        cmocka_unit_test(test_keys_sorted),
        cmocka_unit_test(test_keys_sorted_nested),
        cmocka_unit_test(test_keys_prefix_shorter_first),
        cmocka_unit_test(test_keys_bytewise),
        cmocka_unit_test(test_array_order_kept),
        cmocka_unit_test(test_equivalent_documents),
        cmocka_unit_test(test_scalar_roots),

        cmocka_unit_test(test_numbers_integers_and_reals_agree),
        cmocka_unit_test(test_numbers_zero),
        cmocka_unit_test(test_numbers_fractions),
        cmocka_unit_test(test_numbers_large),
        cmocka_unit_test(test_numbers_exact_not_double),
        cmocka_unit_test(test_numbers_exponent_range),
        cmocka_unit_test(test_numbers_invalid),

        cmocka_unit_test(test_strings_minimal_escapes),
        cmocka_unit_test(test_strings_nul_escape),
        cmocka_unit_test(test_strings_raw_utf8_kept),
        cmocka_unit_test(test_strings_invalid_utf8),
        cmocka_unit_test(test_strings_invalid_escapes),
        cmocka_unit_test(test_keys_unescaped_before_sort_and_dup),

        cmocka_unit_test(test_duplicate_keys_refused),
        cmocka_unit_test(test_invalid_structure),
        cmocka_unit_test(test_embedded_nul_refused),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_error_message),

        cmocka_unit_test(test_nothing_written_on_error),
        cmocka_unit_test(test_validate_only),
        cmocka_unit_test(test_large_document),
        cmocka_unit_test(test_idempotent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
