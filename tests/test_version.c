/*
 * ngx_aigov: unit tests for client versions, ranges and JSON adaptation
 * (include/aigov_version.h, ngx_aigov_module/aigov_version.c).  cmocka;
 * one behaviour per test.
 *
 * Build and run: make -C tests run-test_version   (also: asan, valgrind)
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

#include "aigov_version.h"


#define S(lit)  (lit), (sizeof(lit) - 1)


static aigov_version_t
ver(const char *s)
{
    char             err[128];
    aigov_version_t  v;

    if (aigov_version_parse(s, strlen(s), &v, err, sizeof(err))
        != AIGOV_OK)
    {
        fail_msg("version \"%s\" did not parse: %s", s, err);
    }

    return v;
}


static void
bad_version(const char *s, size_t len, const char *msg)
{
    char             err[128];
    aigov_version_t  v, before;

    memset(&v, 0x5a, sizeof(v));
    before = v;
    err[0] = '\0';

    assert_int_equal(aigov_version_parse(s, len, &v, err, sizeof(err)),
                     AIGOV_ERROR);
    assert_memory_equal(&v, &before, sizeof(v));

    if (msg) {
        assert_string_equal(err, msg);
    }

    assert_true(strlen(err) > 0);
}


static aigov_range_t
range(const char *s)
{
    char           err[128];
    aigov_range_t  r;

    if (aigov_range_parse(s, strlen(s), &r, err, sizeof(err)) != AIGOV_OK) {
        fail_msg("range \"%s\" did not parse: %s", s, err);
    }

    return r;
}


static void
bad_range(const char *s, const char *msg)
{
    char           err[160];
    aigov_range_t  r, before;

    memset(&r, 0x33, sizeof(r));
    before = r;
    err[0] = '\0';

    assert_int_equal(aigov_range_parse(s, strlen(s), &r, err, sizeof(err)),
                     AIGOV_ERROR);
    assert_memory_equal(&r, &before, sizeof(r));

    if (msg) {
        assert_string_equal(err, msg);
    }

    assert_true(strlen(err) > 0);
}


static int
in(const char *r, const char *v)
{
    aigov_range_t    rr;
    aigov_version_t  vv;

    rr = range(r);
    vv = ver(v);

    return aigov_range_match(&rr, &vv);
}


/* versions */

static void
test_version_forms(void **state)
{
    aigov_version_t  v;

    (void) state;

    v = ver("1");
    assert_int_equal(v.given, 1);
    assert_int_equal(v.num[0], 1);
    assert_int_equal(v.num[1], 0);
    assert_int_equal(v.num[2], 0);
    assert_int_equal(v.pre_len, 0);

    v = ver("1.2");
    assert_int_equal(v.given, 2);
    assert_int_equal(v.num[1], 2);

    v = ver("v1.2.3");
    assert_int_equal(v.given, 3);
    assert_int_equal(v.num[2], 3);

    v = ver("V10.20.30");
    assert_int_equal(v.num[0], 10);
    assert_int_equal(v.num[2], 30);

    v = ver("1.2.3-rc.1+build.5");
    assert_int_equal(v.pre_len, 4);
    assert_memory_equal(v.pre, "rc.1", 4);

    v = ver("2.0+exp.sha.5114f85");
    assert_int_equal(v.pre_len, 0);

    v = ver("2024.01.15");
    assert_int_equal(v.num[0], 2024);
    assert_int_equal(v.num[1], 1);
    assert_int_equal(v.num[2], 15);

    v = ver("999999999.999999999.999999999");
    assert_int_equal(v.num[0], 999999999);

    v = ver("1.2-beta");
    assert_int_equal(v.given, 2);
    assert_int_equal(v.pre_len, 4);

    v = ver("1.0.0-x-y-z.--");
    assert_int_equal(v.pre_len, 8);
}


static void
test_version_invalid(void **state)
{
    char  big[AIGOV_VERSION_MAX_LEN + 2];

    (void) state;

    bad_version(S(""), "empty version");
    bad_version(S("v"), "a number is missing");
    bad_version(S("1."), "a number is missing");
    bad_version(S(".1"), "expected a number, found \".\"");
    bad_version(S("1..2"), "expected a number, found \".\"");
    bad_version(S("1.2.3.4"), "more than three numbers");
    bad_version(S("abc"), "expected a number, found \"a\"");
    bad_version(S("vv1"), "expected a number, found \"v\"");
    bad_version(S("1.x"), "expected a number, found \"x\"");
    bad_version(S("*"), "expected a number, found \"*\"");
    bad_version(S("1.2.3-"), "an empty pre-release identifier");
    bad_version(S("1.2.3-rc..1"), "an empty pre-release identifier");
    bad_version(S("1.2.3-rc_1"),
                "\"_\" in the pre-release: use A-Z a-z 0-9 - .");
    bad_version(S("1.2.3+"), "an empty build identifier");
    bad_version(S("1.2.3+a+b"), "\"+\" in the build: use A-Z a-z 0-9 - .");
    bad_version(S(" 1.2"), "expected a number, found \"\\x20\"");
    bad_version(S("1.2 "), "unexpected \"\\x20\"");
    bad_version(S("1.2\n"), "unexpected \"\\x0a\"");
    bad_version(S("1234567890"), "a number of more than 9 digits");
    bad_version(S("1.2.3-\xc3\xa9"),
                "\"\\xc3\" in the pre-release: use A-Z a-z 0-9 - .");
    bad_version(S("\0"), "expected a number, found \"\\x00\"");
    bad_version(S("1\0"), "unexpected \"\\x00\"");
    bad_version(S("-1"), "expected a number, found \"-\"");
    bad_version(S("1.2.3\""), "unexpected \"\\x22\"");

    memset(big, '1', sizeof(big));
    bad_version(big, AIGOV_VERSION_MAX_LEN + 1, "longer than 64 bytes");

    /* 64 bytes are fine */
    memcpy(big, "1.2.3-", 6);
    memset(big + 6, 'a', AIGOV_VERSION_MAX_LEN - 6);
    big[AIGOV_VERSION_MAX_LEN] = '\0';
    assert_int_equal(ver(big).pre_len, AIGOV_VERSION_MAX_LEN - 6);
}


static void
test_version_err_optional(void **state)
{
    aigov_version_t  v;

    (void) state;

    /* a NULL or empty error buffer is fine */
    assert_int_equal(aigov_version_parse(S("x"), &v, NULL, 0), AIGOV_ERROR);
    assert_int_equal(aigov_version_parse(S("x"), &v, NULL, 10), AIGOV_ERROR);
}


static void
test_version_order(void **state)
{
    size_t            i, j;
    aigov_version_t   a, b;

    (void) state;

    /* SemVer 2.0's example, in order */
    static const char  *order[] = {
        "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
        "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1",
        "1.1.0", "1.10.0", "2.0.0-0", "2.0.0"
    };

    for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        for (j = 0; j < sizeof(order) / sizeof(order[0]); j++) {
            a = ver(order[i]);
            b = ver(order[j]);

            if (aigov_version_cmp(&a, &b) != (i > j) - (i < j)) {
                fail_msg("cmp(%s, %s) = %d", order[i], order[j],
                         aigov_version_cmp(&a, &b));
            }
        }
    }
}


static void
test_version_equal_forms(void **state)
{
    aigov_version_t  a, b;

    (void) state;

    a = ver("1.2");
    b = ver("v1.2.0");
    assert_int_equal(aigov_version_cmp(&a, &b), 0);

    a = ver("1");
    b = ver("1.0.0+build");
    assert_int_equal(aigov_version_cmp(&a, &b), 0);

    a = ver("01.002.0003");
    b = ver("1.2.3");
    assert_int_equal(aigov_version_cmp(&a, &b), 0);

    /* numeric identifiers compare by value, leading zeros or not */
    a = ver("1.0.0-rc.002");
    b = ver("1.0.0-rc.2");
    assert_int_equal(aigov_version_cmp(&a, &b), 0);

    a = ver("1.0.0-rc.10");
    b = ver("1.0.0-rc.9");
    assert_true(aigov_version_cmp(&a, &b) > 0);

    /* longer than any integer: still by value */
    a = ver("1.0.0-123456789012345678901234567890");
    b = ver("1.0.0-123456789012345678901234567891");
    assert_true(aigov_version_cmp(&a, &b) < 0);
}


static void
test_version_format(void **state)
{
    char             buf[AIGOV_VERSION_MAX_LEN + 32];
    aigov_version_t  v;

    (void) state;

    v = ver("v1.2");
    assert_int_equal(aigov_version_format(&v, buf, sizeof(buf)), 5);
    assert_string_equal(buf, "1.2.0");

    v = ver("3.0.1-beta.2+b");
    assert_int_equal(aigov_version_format(&v, buf, sizeof(buf)), 12);
    assert_string_equal(buf, "3.0.1-beta.2");

    /* too small: 0 and an empty string */
    assert_int_equal(aigov_version_format(&v, buf, 12), 0);
    assert_string_equal(buf, "");
}


/* ranges */

static void
test_range_comparators(void **state)
{
    (void) state;

    assert_true(in(">=1.2", "1.2.0"));
    assert_true(in(">=1.2", "1.3"));
    assert_false(in(">=1.2", "1.1.99"));

    assert_true(in(">1.2.3", "1.2.4"));
    assert_false(in(">1.2.3", "1.2.3"));
    assert_false(in(">1.2", "1.2.9"));
    assert_true(in(">1.2", "1.3.0"));
    assert_false(in(">1", "1.99.99"));
    assert_true(in(">1", "2"));

    assert_true(in("<1.2", "1.1.99"));
    assert_false(in("<1.2", "1.2.0"));

    assert_true(in("<=1.2.3", "1.2.3"));
    assert_false(in("<=1.2.3", "1.2.4"));
    assert_true(in("<=1.2", "1.2.99"));
    assert_false(in("<=1.2", "1.3.0"));
    assert_true(in("<=1", "1.99.0"));
    assert_false(in("<=1", "2.0.0"));

    assert_true(in("=1.4.2", "1.4.2"));
    assert_true(in("1.4.2", "v1.4.2"));
    assert_false(in("=1.4.2", "1.4.3"));
    assert_true(in("=1.4", "1.4.9"));
    assert_false(in("1.4", "1.5"));
    assert_true(in("1.4.x", "1.4.7"));
    assert_true(in("1", "1.9"));
    assert_true(in("1.x", "1.0.0"));
    assert_true(in("1.*", "1.999"));
    assert_false(in("1.X", "2.0"));
    assert_false(in("1.x.x", "0.9"));
    assert_true(in("*", "0.0.1"));
    assert_true(in("x", "99"));
    assert_true(in(">=*", "3"));
    assert_true(in("=*", "3"));
}


static void
test_range_tilde_caret(void **state)
{
    (void) state;

    assert_true(in("~1.2.3", "1.2.3"));
    assert_true(in("~1.2.3", "1.2.9"));
    assert_false(in("~1.2.3", "1.3.0"));
    assert_false(in("~1.2.3", "1.2.2"));
    assert_true(in("~1.2", "1.2.0"));
    assert_false(in("~1.2", "1.3.0"));
    assert_true(in("~1", "1.9.9"));
    assert_false(in("~1", "2.0.0"));

    assert_true(in("^1.2.3", "1.9.0"));
    assert_false(in("^1.2.3", "1.2.2"));
    assert_false(in("^1.2.3", "2.0.0"));
    assert_true(in("^1.2", "1.2.0"));
    assert_true(in("^1", "1.0.0"));
    assert_false(in("^1", "2.0.0"));
    assert_true(in("^0.2.3", "0.2.9"));
    assert_false(in("^0.2.3", "0.3.0"));
    assert_true(in("^0.0.3", "0.0.3"));
    assert_false(in("^0.0.3", "0.0.4"));
    assert_true(in("^0.2", "0.2.5"));
    assert_false(in("^0.2", "0.3"));
    assert_true(in("^0.0", "0.0.9"));
    assert_false(in("^0.0", "0.1.0"));
    assert_true(in("^0", "0.9.9"));
    assert_false(in("^0", "1.0.0"));
}


static void
test_range_sets(void **state)
{
    (void) state;

    assert_true(in(">=1.0 <2.0", "1.5"));
    assert_false(in(">=1.0 <2.0", "2.0"));
    assert_false(in(">=1.0 <2.0", "0.9"));
    assert_true(in(">=1.0, <2.0", "1.0"));
    assert_true(in(">=1.0,<2.0", "1.9.9"));
    assert_true(in(">= 1.0 ,  < 2.0", "1.1"));
    assert_true(in("\t>=1.0\t<2.0\t", "1.1"));

    assert_true(in("1.x || >=3.0", "1.4"));
    assert_true(in("1.x || >=3.0", "3.1"));
    assert_false(in("1.x || >=3.0", "2.5"));
    assert_true(in("1.x||3.x", "3.0"));
    assert_true(in("<1 || 2 || >=4", "2.2"));
    assert_false(in("<1 || 2 || >=4", "3"));

    /* contradictions match nothing, but are not errors */
    assert_false(in(">=2.0 <1.0", "1.5"));
}


static void
test_range_prerelease(void **state)
{
    (void) state;

    /* a pre-release counts as its release against release bounds */
    assert_true(in(">=2.0", "2.0.0-rc.1"));
    assert_false(in("<2.0", "2.0.0-rc.1"));
    assert_false(in("1.x", "2.0.0-beta"));
    assert_true(in("^1.2", "1.3.0-alpha"));
    assert_true(in("=1.4.2", "1.4.2-rc.1"));
    assert_false(in("<=1.2", "1.3.0-rc.1"));

    /* and by precedence against bounds that carry one */
    assert_true(in(">=2.0.0-rc.2", "2.0.0-rc.10"));
    assert_false(in(">=2.0.0-rc.2", "2.0.0-rc.1"));
    assert_true(in(">=2.0.0-rc.2", "2.0.0"));
    assert_true(in("<2.0.0-rc.1", "2.0.0-beta"));
    assert_false(in("<2.0.0-rc.1", "2.0.0"));
    assert_true(in("=2.0.0-rc.1", "2.0.0-rc.1"));
    assert_false(in("=2.0.0-rc.1", "2.0.0"));
    assert_false(in("=2.0.0-rc.1", "2.0.0-rc.1.1"));

    /* a version with a pre-release is a full version */
    assert_true(in(">=1.2-rc.1", "1.2.0-rc.2"));
    assert_false(in(">=1.2-rc.1", "1.2.0-beta"));
}


static void
test_range_invalid(void **state)
{
    int   i;
    char  buf[AIGOV_RANGE_MAX_LEN + 8];

    (void) state;

    bad_range("", "empty range");
    bad_range("   ", "empty range");
    bad_range(" , ", "empty range");
    bad_range("||", "an empty alternative around \"||\"");
    bad_range("1.0 ||", "an empty alternative around \"||\"");
    bad_range("|| 1.0", "an empty alternative around \"||\"");
    bad_range("1.0 || || 2.0", "an empty alternative around \"||\"");
    bad_range(">=", "\">=\" without a version");
    bad_range(">= ", "\">= \" without a version");
    bad_range(">=1.0 <", "\"<\" without a version");
    bad_range("^,1.0", "\"^\" without a version");
    bad_range("1.0 - 2.0", "hyphen ranges are not supported: write "
              "\">=1.0 <=2.0\" for \"1.0 - 2.0\"");
    bad_range("<*", "\"<*\" matches no version");
    bad_range("> x", "\"> x\" matches no version");
    bad_range("1 | 2", "\"|\" alone: alternatives are separated by \"||\"");
    bad_range("1|", "\"|\" alone: alternatives are separated by \"||\"");
    bad_range("1.x.3", "\"1.x.3\": a number after a wildcard");
    bad_range("1.x.", "\"1.x.\": nothing after a wildcard");
    bad_range("1.x-rc", "\"1.x-rc\": a pre-release after a wildcard");
    bad_range("*+b", "\"*+b\": a build after a wildcard");
    bad_range("x.x.x.x", "\"x.x.x.x\": more than three parts");
    bad_range(">=1.0>=2", "\"1.0>=2\": unexpected \">\"");
    bad_range("=>1.0", "\">1.0\": expected a number, found \">\"");
    bad_range("~>1.0", "\">1.0\": expected a number, found \">\"");
    bad_range(">=abc", "\"abc\": expected a number, found \"a\"");
    bad_range("1.0 \xff", "\"\xff\": expected a number, found \"\\xff\"");
    bad_range("1.0 && 2.0", "\"&&\": expected a number, found \"&\"");

    /* 8 comparators of two bounds fill it, a ninth does not fit */
    strcpy(buf, "~1.2");
    for (i = 0; i < 7; i++) {
        strcat(buf, " ~1.2");
    }
    assert_true(in(buf, "1.2.5"));
    strcat(buf, " ~1.2");
    bad_range(buf, "more than 16 bounds (\"1.x\" and \"~1.2\" make two)");

    strcpy(buf, "1.0.0");
    for (i = 0; i < 7; i++) {
        strcat(buf, "||1.0.0");
    }
    assert_true(in(buf, "1"));
    strcat(buf, "||1.0.0");
    bad_range(buf, "more than 8 alternatives");

    memset(buf, ' ', AIGOV_RANGE_MAX_LEN + 1);
    buf[0] = '1';
    buf[AIGOV_RANGE_MAX_LEN + 1] = '\0';
    bad_range(buf, "longer than 256 bytes");
    buf[AIGOV_RANGE_MAX_LEN] = '\0';
    assert_true(in(buf, "1.0"));
}


static void
test_range_min(void **state)
{
    aigov_range_t    r;
    aigov_version_t  v, c;

    (void) state;

    v = ver("1.0");
    aigov_range_min(&r, &v);

    c = ver("1.0.0");
    assert_true(aigov_range_match(&r, &c));
    c = ver("0.9.9");
    assert_false(aigov_range_match(&r, &c));
    c = ver("1.0.0-beta");
    assert_true(aigov_range_match(&r, &c));
    c = ver("7");
    assert_true(aigov_range_match(&r, &c));

    v = ver("2.0.0-rc.1");
    aigov_range_min(&r, &v);
    c = ver("2.0.0-beta");
    assert_false(aigov_range_match(&r, &c));
    c = ver("2.0.0-rc.1");
    assert_true(aigov_range_match(&r, &c));
}


/* dates */

static void
test_dates(void **state)
{
    (void) state;

    int64_t  t;

    assert_int_equal(aigov_parse_date(S("1970-01-01"), &t), AIGOV_OK);
    assert_int_equal(t, 0);
    assert_int_equal(aigov_parse_date(S("2026-01-01"), &t), AIGOV_OK);
    assert_int_equal(t, 1767225600);
    assert_int_equal(aigov_parse_date(S("2026-12-31T23:59:59Z"), &t),
                     AIGOV_OK);
    assert_int_equal(t, 1798761599);
    assert_int_equal(aigov_parse_date(S("2024-02-29"), &t), AIGOV_OK);
    assert_int_equal(t, 1709164800);
    assert_int_equal(aigov_parse_date(S("2000-02-29"), &t), AIGOV_OK);
    assert_int_equal(aigov_parse_date(S("@1688169599"), &t), AIGOV_OK);
    assert_int_equal(t, 1688169599);
    assert_int_equal(aigov_parse_date(S("@0"), &t), AIGOV_OK);
    assert_int_equal(aigov_parse_date(S("9999-12-31T23:59:59Z"), &t),
                     AIGOV_OK);
    assert_int_equal(t, 253402300799);

    t = 42;
    assert_int_equal(aigov_parse_date(S(""), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("@"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("@-1"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("@253402300800"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("@1234567890123"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-02-29"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("1900-02-29"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("1969-12-31"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-13-01"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-00-01"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-04-31"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-1-01"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026/01/01"), &t), AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-01-01T24:00:00Z"), &t),
                     AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-01-01T00:00:00"), &t),
                     AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-01-01 00:00:00Z"), &t),
                     AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("2026-01-01T00:60:00Z"), &t),
                     AIGOV_ERROR);
    assert_int_equal(aigov_parse_date(S("+026-01-01"), &t), AIGOV_ERROR);
    assert_int_equal(t, 42);
}


/* paths and operations */

static void
bad_op(const char *s, const char *msg)
{
    char              err[160];
    aigov_adapt_op_t  op;

    err[0] = '\0';

    assert_int_equal(aigov_adapt_op_parse(s, strlen(s), &op, err,
                                          sizeof(err)),
                     AIGOV_ERROR);
    assert_string_equal(err, msg);
}


static aigov_adapt_op_t
op_of(const char *s)
{
    char              err[160];
    aigov_adapt_op_t  op;

    if (aigov_adapt_op_parse(s, strlen(s), &op, err, sizeof(err))
        != AIGOV_OK)
    {
        fail_msg("op \"%s\" did not parse: %s", s, err);
    }

    return op;
}


static void
test_path_parse(void **state)
{
    char          err[128];
    aigov_path_t  p;

    (void) state;

    assert_int_equal(aigov_path_parse(S("choices[*].message.content"), &p,
                                      err, sizeof(err)),
                     AIGOV_OK);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.step[0].type, AIGOV_STEP_KEY);
    assert_int_equal(p.step[0].len, 7);
    assert_int_equal(p.step[1].type, AIGOV_STEP_ALL);
    assert_int_equal(p.step[3].len, 7);
    assert_memory_equal(p.step[3].key, "content", 7);

    assert_int_equal(aigov_path_parse(S("$.a[0][-1].b-c_d"), &p, err,
                                      sizeof(err)),
                     AIGOV_OK);
    assert_int_equal(p.n, 4);
    assert_int_equal(p.step[1].index, 0);
    assert_int_equal(p.step[2].index, -1);

    assert_int_equal(aigov_path_parse(S("$[2].x"), &p, err, sizeof(err)),
                     AIGOV_OK);
    assert_int_equal(p.step[0].type, AIGOV_STEP_INDEX);

    assert_int_equal(aigov_path_parse(S("[*].id"), &p, err, sizeof(err)),
                     AIGOV_OK);
    assert_int_equal(p.step[0].type, AIGOV_STEP_ALL);
}


static void
test_path_invalid(void **state)
{
    (void) state;

    bad_op("remove=", "invalid path \"\": empty path");
    bad_op("remove=$", "invalid path \"$\": \"$\" is the whole document: "
           "name a member");
    bad_op("remove=$x", "invalid path \"$x\": \"$\" must be followed by "
           "\".\" or \"[\"");
    bad_op("remove=.a", "invalid path \".a\": a path starts with a key or "
           "\"[\"");
    bad_op("remove=a.", "invalid path \"a.\": a key is missing at the end");
    bad_op("remove=a..b", "invalid path \"a..b\": \".\" in a key: use A-Z "
           "a-z 0-9 _ -");
    bad_op("remove=a b", "invalid path \"a b\": unexpected \"\\x20\"");
    bad_op("remove=a[", "invalid path \"a[\": \"[\" must hold N, -N or *");
    bad_op("remove=a[x]", "invalid path \"a[x]\": \"[\" must hold N, -N "
           "or *");
    bad_op("remove=a[1", "invalid path \"a[1\": \"[\" without \"]\"");
    bad_op("remove=a[-0].b", "invalid path \"a[-0].b\": \"[-0]\": the last "
           "element is [-1]");
    bad_op("remove=a[1234567890].b", "invalid path \"a[1234567890].b\": an "
           "index of more than 9 digits");
    bad_op("remove=a[0]", "path \"a[0]\" must end in a key");
    bad_op("remove=a[*]", "path \"a[*]\" must end in a key");
    bad_op("remove=a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q",
           "invalid path \"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q\": more than "
           "16 steps");
    bad_op("remove=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
           "aaaaaaaaa", "invalid path \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": a key longer than 64 bytes");
    bad_op("remove=a\xc3\xa9", "invalid path \"a\xc3\xa9\": unexpected "
           "\"\\xc3\"");
}


static void
test_op_parse(void **state)
{
    char              err[128];
    aigov_adapt_op_t  op;

    (void) state;

    assert_int_equal(aigov_adapt_op_parse(S("set=a:b"), &op, err,
                                          sizeof(err)),
                     AIGOV_DECLINED);
    assert_int_equal(aigov_adapt_op_parse(S("rename"), &op, err,
                                          sizeof(err)),
                     AIGOV_DECLINED);

    op = op_of("remove=usage.details");
    assert_int_equal(op.type, AIGOV_ADAPT_REMOVE);
    assert_int_equal(op.from.n, 2);

    op = op_of("rename=a.b:a.c");
    assert_int_equal(op.type, AIGOV_ADAPT_RENAME);
    assert_int_equal(op.common, 1);
    assert_int_equal(op.to.n, 2);

    op = op_of("rename=usage.total_tokens:total");
    assert_int_equal(op.common, 1);
    assert_int_equal(op.to.n, 2);
    assert_memory_equal(op.to.step[0].key, "usage", 5);
    assert_int_equal(op.to.step[1].len, 5);
    assert_memory_equal(op.to.step[1].key, "total", 5);

    op = op_of("rename=choices[*].message.content:choices[*].text");
    assert_int_equal(op.common, 2);

    op = op_of("rename=a.b:a.b.c");
    assert_int_equal(op.common, 1);

    op = op_of("rename=a:b");
    assert_int_equal(op.common, 0);

    op = op_of("rename=a[*].b:c");
    assert_int_equal(op.common, 2);
    assert_int_equal(op.to.step[1].type, AIGOV_STEP_ALL);

    bad_op("rename=a.b", "rename needs FROM:TO");
    bad_op("rename=a.b:", "invalid path \"\": empty path");
    bad_op("rename=:a", "invalid path \"\": empty path");
    bad_op("rename=a.b:a.b", "renames \"a.b\" to itself");
    bad_op("rename=a.b:b", "renames \"a.b\" to itself");
    bad_op("rename=a[*].b:c.d", "a \"[*]\" must be among the leading "
           "steps FROM and TO share");
    bad_op("rename=a[*].b:x[*].b", "a \"[*]\" must be among the leading "
           "steps FROM and TO share");
    bad_op("rename=a.b:a[0]", "path \"a[0]\" must end in a key");
    bad_op("rename=a[0]:b", "path \"a[0]\" must end in a key");
    bad_op("rename=a:b:c", "invalid path \"b:c\": unexpected \":\"");
}


/* adaptation over documents */

static char *
adapt(const char *body, const char *const *ops, size_t *changed)
{
    char              *out;
    size_t             n, total;
    json_t            *doc;
    aigov_adapt_op_t   op;

    doc = aigov_adapt_load(body, strlen(body));
    assert_non_null(doc);

    total = 0;

    for ( /* void */ ; *ops; ops++) {
        op = op_of(*ops);
        total += aigov_adapt_apply(doc, &op);
    }

    n = aigov_adapt_dump(doc, NULL, 0);
    assert_true(n > 0);

    out = malloc(n + 1);
    assert_non_null(out);
    assert_int_equal(aigov_adapt_dump(doc, out, n), n);
    out[n] = '\0';

    json_decref(doc);

    if (changed) {
        *changed = total;
    }

    return out;
}


static void
expect(const char *body, const char *const *ops, const char *want,
    size_t want_changed)
{
    char    *got;
    size_t   changed;

    got = adapt(body, ops, &changed);
    assert_string_equal(got, want);
    assert_int_equal(changed, want_changed);
    free(got);
}


static void
test_adapt_remove(void **state)
{
    static const char  *one[] = { "remove=usage.details", NULL };
    static const char  *all[] = { "remove=choices[*].logprobs", NULL };
    static const char  *idx[] = { "remove=a[-1].x", "remove=a[0].y", NULL };
    static const char  *top[] = { "remove=id", "remove=missing", NULL };

    (void) state;

    expect("{\"usage\":{\"total\":3,\"details\":{\"a\":1}},\"id\":\"x\"}",
           one, "{\"usage\":{\"total\":3},\"id\":\"x\"}", 1);
    expect("{\"usage\":5}", one, "{\"usage\":5}", 0);
    expect("{\"choices\":[{\"i\":0,\"logprobs\":null},{\"i\":1},"
           "{\"i\":2,\"logprobs\":[1]},7]}",
           all, "{\"choices\":[{\"i\":0},{\"i\":1},{\"i\":2},7]}", 2);
    expect("{\"a\":[{\"x\":1,\"y\":2},{\"x\":3}]}", idx,
           "{\"a\":[{\"x\":1},{}]}", 2);
    expect("{\"id\":1,\"k\":[]}", top, "{\"k\":[]}", 1);
    expect("[1,2]", top, "[1,2]", 0);
    expect("\"just a string\"", top, "\"just a string\"", 0);
}


static void
test_adapt_rename_in_place(void **state)
{
    static const char  *ren[] = { "rename=usage.total_tokens:total", NULL };
    static const char  *over[] = { "rename=a:b", NULL };
    static const char  *chain[] = { "rename=a:b", "rename=b:c", NULL };

    (void) state;

    /* keeps its place among the siblings */
    expect("{\"usage\":{\"prompt\":1,\"total_tokens\":3,\"z\":0}}", ren,
           "{\"usage\":{\"prompt\":1,\"total\":3,\"z\":0}}", 1);

    /* replaces a member of the new name */
    expect("{\"b\":1,\"a\":2,\"c\":3}", over, "{\"b\":2,\"c\":3}", 1);
    expect("{\"a\":2,\"c\":3,\"b\":1}", over, "{\"b\":2,\"c\":3}", 1);

    expect("{\"a\":{\"x\":[1]}}", chain, "{\"c\":{\"x\":[1]}}", 2);
    expect("{\"x\":1}", chain, "{\"x\":1}", 0);
    expect("[{\"a\":1}]", over, "[{\"a\":1}]", 0);
}


static void
test_adapt_move(void **state)
{
    static const char  *chat[] = {
        "rename=choices[*].message.content:choices[*].text",
        "remove=choices[*].message", NULL
    };
    static const char  *deep[] = { "rename=a.b:x.y.z", NULL };
    static const char  *blocked[] = { "rename=a.b:s.t", NULL };
    static const char  *index[] = { "rename=a[0].v:a[1].w", NULL };
    static const char  *into[] = { "rename=a.b:a.b.c", NULL };
    static const char  *outof[] = { "rename=a.b.c:a.b", NULL };
    static const char  *list[] = { "rename=[*].old:new", NULL };

    (void) state;

    expect("{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
           "\"content\":\"Hi\"},\"finish_reason\":\"stop\"},"
           "{\"index\":1,\"message\":{\"role\":\"assistant\"}}]}",
           chat,
           "{\"choices\":[{\"index\":0,\"finish_reason\":\"stop\","
           "\"text\":\"Hi\"},{\"index\":1}]}", 3);

    /* missing objects on the way are created */
    expect("{\"a\":{\"b\":1}}", deep, "{\"a\":{},\"x\":{\"y\":{\"z\":1}}}",
           1);
    expect("{\"a\":{\"b\":1},\"x\":{\"q\":0}}", deep,
           "{\"a\":{},\"x\":{\"q\":0,\"y\":{\"z\":1}}}", 1);

    /* a string in the way: left as it was */
    expect("{\"a\":{\"b\":1},\"s\":\"str\"}", blocked,
           "{\"a\":{\"b\":1},\"s\":\"str\"}", 0);

    /* indexes must exist */
    expect("{\"a\":[{\"v\":1},{}]}", index, "{\"a\":[{},{\"w\":1}]}", 1);
    expect("{\"a\":[{\"v\":1}]}", index, "{\"a\":[{\"v\":1}]}", 0);

    /* into itself, and out of itself */
    expect("{\"a\":{\"b\":{\"x\":1}}}", into,
           "{\"a\":{\"b\":{\"c\":{\"x\":1}}}}", 1);
    expect("{\"a\":{\"b\":5}}", into, "{\"a\":{\"b\":5}}", 0);
    expect("{\"a\":{\"b\":{\"c\":[1],\"d\":2}}}", outof,
           "{\"a\":{\"b\":[1]}}", 1);

    /* a top-level array */
    expect("[{\"old\":1,\"k\":2},{\"k\":3},4]", list,
           "[{\"new\":1,\"k\":2},{\"k\":3},4]", 1);
}


static void
test_adapt_load(void **state)
{
    json_t  *doc;

    (void) state;

    assert_null(aigov_adapt_load(S("")));
    assert_null(aigov_adapt_load(S("<html>this is {not json")));
    assert_null(aigov_adapt_load(S("{\"a\":1}{\"b\":2}")));
    assert_null(aigov_adapt_load(S("{\"a\":1,\"a\":2}")));
    assert_null(aigov_adapt_load(S("{\"a\":123456789012345678901234567890}")));
    assert_null(aigov_adapt_load(S("{\"a\":1e999}")));
    assert_null(aigov_adapt_load(S("{\"a\":\"\xff\"}")));
    assert_null(aigov_adapt_load(S("{\"a\":1")));

    doc = aigov_adapt_load(S(" 42 "));
    assert_non_null(doc);
    json_decref(doc);

    /* a NUL inside a string survives the round trip */
    doc = aigov_adapt_load(S("{\"a\":\"x\\u0000y\"}"));
    assert_non_null(doc);
    assert_int_equal(json_string_length(json_object_get(doc, "a")), 3);
    json_decref(doc);
}


static void
test_adapt_dump(void **state)
{
    char     buf[64];
    size_t   n;
    json_t  *doc;

    (void) state;

    doc = aigov_adapt_load(S("{ \"b\" : [ 1, 2.5, true, null ],\n"
                             "  \"a\": \"\\u00e9/\" }"));
    assert_non_null(doc);

    n = aigov_adapt_dump(doc, NULL, 0);
    assert_int_equal(n, 33);

    /* too small: the size needed, nothing promised about buf */
    assert_int_equal(aigov_adapt_dump(doc, buf, 10), 33);

    assert_int_equal(aigov_adapt_dump(doc, buf, sizeof(buf)), 33);
    assert_memory_equal(buf, "{\"b\":[1,2.5,true,null],\"a\":\"\xc3\xa9/\"}",
                        33);

    json_decref(doc);

    /* values, not spellings: 1.0 stays a real, 0.1 stays 0.1 */
    doc = aigov_adapt_load(S("[1.0,0.1,1E2,-0]"));
    n = aigov_adapt_dump(doc, buf, sizeof(buf));
    buf[n] = '\0';
    assert_string_equal(buf, "[1.0,0.1,100.0,0]");
    json_decref(doc);

    doc = aigov_adapt_load(S("{\"p\":-2.5e-7,\"q\":[1e300]}"));
    n = aigov_adapt_dump(doc, buf, sizeof(buf));
    buf[n] = '\0';
    assert_string_equal(buf, "{\"p\":-2.5e-7,\"q\":[1e300]}");
    json_decref(doc);

    /* as many digits as the value needs, for every real of the document */
    doc = aigov_adapt_load(S("[0.1,0.30000000000000004]"));
    n = aigov_adapt_dump(doc, buf, sizeof(buf));
    buf[n] = '\0';
    assert_string_equal(buf, "[0.10000000000000001,0.30000000000000004]");
    json_decref(doc);

    doc = aigov_adapt_load(S("[0.1,0.1234567890123456]"));
    n = aigov_adapt_dump(doc, buf, sizeof(buf));
    buf[n] = '\0';
    assert_string_equal(buf, "[0.1,0.1234567890123456]");
    json_decref(doc);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_version_forms),
        cmocka_unit_test(test_version_invalid),
        cmocka_unit_test(test_version_err_optional),
        cmocka_unit_test(test_version_order),
        cmocka_unit_test(test_version_equal_forms),
        cmocka_unit_test(test_version_format),
        cmocka_unit_test(test_range_comparators),
        cmocka_unit_test(test_range_tilde_caret),
        cmocka_unit_test(test_range_sets),
        cmocka_unit_test(test_range_prerelease),
        cmocka_unit_test(test_range_invalid),
        cmocka_unit_test(test_range_min),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_path_parse),
        cmocka_unit_test(test_path_invalid),
        cmocka_unit_test(test_op_parse),
        cmocka_unit_test(test_adapt_remove),
        cmocka_unit_test(test_adapt_rename_in_place),
        cmocka_unit_test(test_adapt_move),
        cmocka_unit_test(test_adapt_load),
        cmocka_unit_test(test_adapt_dump),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
