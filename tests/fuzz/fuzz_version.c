/*
 * libFuzzer target: client versions and version ranges
 * (include/aigov_version.h).
 *
 * Input: "RANGE\nVERSION\nVERSION".  Invariants: on error the output is
 * untouched and the message is non-empty and NUL terminated; a parsed
 * version formats and (when that fits) parses back to an equal one; the
 * order is antisymmetric; "=V", "^V", "~V", ">=V", "<=V", "*||V" and
 * version_minimum V contain V, "<V" and ">V" do not; a parsed range has
 * consistent sets and matching is deterministic.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_version.h"


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


static int
contains(const char *prefix, const char *canon, const aigov_version_t *v)
{
    char           buf[AIGOV_VERSION_MAX_LEN + 48], err[160];
    aigov_range_t  r;

    snprintf(buf, sizeof(buf), "%s%s", prefix, canon);

    if (aigov_range_parse(buf, strlen(buf), &r, err, sizeof(err))
        != AIGOV_OK)
    {
        abort();        /* a canonical version always makes a range */
    }

    return aigov_range_match(&r, v);
}


static int
parse_version(const char *s, size_t len, aigov_version_t *v)
{
    char             err[128], canon[AIGOV_VERSION_MAX_LEN + 32];
    size_t           n;
    aigov_range_t    r;
    aigov_version_t  before, back;

    memset(v, 0xa5, sizeof(*v));
    before = *v;
    memset(err, 'X', sizeof(err));

    if (aigov_version_parse(s, len, v, err, sizeof(err)) != AIGOV_OK) {
        if (memcmp(v, &before, sizeof(*v)) != 0) {
            abort();
        }

        check_err(err, sizeof(err));
        return 0;
    }

    if (v->given < 1 || v->given > 3 || v->pre_len > AIGOV_VERSION_MAX_LEN
        || v->num[0] > AIGOV_VERSION_NUM_MAX
        || v->num[1] > AIGOV_VERSION_NUM_MAX
        || v->num[2] > AIGOV_VERSION_NUM_MAX)
    {
        abort();
    }

    n = aigov_version_format(v, canon, sizeof(canon));

    if (n == 0 || n != strlen(canon)) {
        abort();
    }

    if (aigov_version_cmp(v, v) != 0) {
        abort();
    }

    aigov_range_min(&r, v);

    if (!aigov_range_match(&r, v)) {
        abort();
    }

    if (n > AIGOV_VERSION_MAX_LEN) {
        /* "1-<61 bytes>" is fine, "1.0.0-<61 bytes>" too long to parse */
        return 1;
    }

    if (aigov_version_parse(canon, n, &back, NULL, 0) != AIGOV_OK
        || aigov_version_cmp(&back, v) != 0
        || back.pre_len != v->pre_len
        || memcmp(back.pre, v->pre, v->pre_len) != 0)
    {
        abort();
    }

    if (!contains("=", canon, v) || !contains("^", canon, v)
        || !contains("~", canon, v) || !contains(">=", canon, v)
        || !contains("<=", canon, v) || contains("<", canon, v)
        || contains(">", canon, v) || !contains("*||", canon, v))
    {
        abort();
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int              c1, c2, m;
    char             err[160];
    size_t           i, rlen, rest, alen;
    const char      *s, *nl, *a, *b;
    aigov_range_t    r, before;
    aigov_version_t  va, vb;

    s = (const char *) data;

    nl = memchr(s, '\n', size);
    rlen = nl ? (size_t) (nl - s) : size;

    memset(&r, 0x3c, sizeof(r));
    before = r;
    memset(err, 'X', sizeof(err));

    if (aigov_range_parse(s, rlen, &r, err, sizeof(err)) != AIGOV_OK) {
        if (memcmp(&r, &before, sizeof(r)) != 0) {
            abort();
        }

        check_err(err, sizeof(err));
        r.nsets = 0;

    } else {
        if (r.nsets == 0 || r.nsets > AIGOV_RANGE_MAX_SETS
            || r.n > AIGOV_RANGE_MAX_BOUNDS || r.end[r.nsets - 1] != r.n)
        {
            abort();
        }

        for (i = 1; i < r.nsets; i++) {
            if (r.end[i] < r.end[i - 1]) {
                abort();
            }
        }

        for (i = 0; i < r.n; i++) {
            if (r.bound[i].op < AIGOV_VOP_GE || r.bound[i].op > AIGOV_VOP_EQ
                || r.bound[i].v.given != 3)
            {
                abort();
            }
        }
    }

    if (nl == NULL) {
        return 0;
    }

    a = nl + 1;
    rest = size - rlen - 1;
    nl = memchr(a, '\n', rest);
    alen = nl ? (size_t) (nl - a) : rest;

    if (!parse_version(a, alen, &va)) {
        return 0;
    }

    if (r.nsets) {
        m = aigov_range_match(&r, &va);

        if (m != 0 && m != 1) {
            abort();
        }

        if (aigov_range_match(&r, &va) != m) {
            abort();
        }
    }

    if (nl == NULL) {
        return 0;
    }

    b = nl + 1;

    if (!parse_version(b, rest - alen - 1, &vb)) {
        return 0;
    }

    c1 = aigov_version_cmp(&va, &vb);
    c2 = aigov_version_cmp(&vb, &va);

    if ((c1 > 0) != (c2 < 0) || (c1 == 0) != (c2 == 0)) {
        abort();
    }

    return 0;
}
