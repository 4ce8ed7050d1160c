/*
 * ngx_aigov: client versions, version ranges and JSON response adaptation
 * (include/aigov_version.h).  libc and jansson only.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_version.h"


#define AIGOV_VOP_NONE    0
#define AIGOV_VOP_TILDE   6
#define AIGOV_VOP_CARET   7


static int aigov_version_scan(const char *s, size_t len, aigov_version_t *v,
    int wild, char *err, size_t errlen);
static int aigov_ident_list(const char *s, size_t len, char *err,
    size_t errlen, const char *what);
static int aigov_ident_cmp(const char *a, size_t alen, const char *b,
    size_t blen);
static int aigov_bound_ok(const aigov_vbound_t *b, const aigov_version_t *v);
static int aigov_range_push(aigov_range_t *r, int op, uint32_t major,
    uint32_t minor, uint32_t patch, const aigov_version_t *pre);
static int aigov_range_desugar(aigov_range_t *r, int op,
    const aigov_version_t *v, const char *tok, size_t toklen, char *err,
    size_t errlen);
static int aigov_is_key_char(int c);
static size_t aigov_adapt_walk(json_t *node, const aigov_adapt_op_t *op,
    const aigov_path_t *p, size_t i, size_t stop);
static size_t aigov_adapt_move(json_t *anchor, const aigov_adapt_op_t *op);
static json_t *aigov_adapt_step(json_t *node, const aigov_step_t *st);
static int aigov_adapt_rename_here(json_t *obj, const aigov_step_t *from,
    const aigov_step_t *to);


static void
aigov_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
aigov_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  ap;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}


/* A byte for an error message: itself when printable, else "\xNN". */

static const char *
aigov_show(int c, char *buf)
{
    c &= 0xff;

    if (c > 0x20 && c < 0x7f && c != '"' && c != '\\') {
        buf[0] = (char) c;
        buf[1] = '\0';

    } else {
        snprintf(buf, 5, "\\x%02x", c);
    }

    return buf;
}


/* Versions */

int
aigov_version_parse(const char *s, size_t len, aigov_version_t *v,
    char *err, size_t errlen)
{
    return aigov_version_scan(s, len, v, 0, err, errlen);
}


/*
 * wild: the range syntax, where "x", "X" and "*" may stand for the parts
 * from some point on ("1.x", "1.2.*", "*"); given counts the numbers
 * before the first one.
 */

static int
aigov_version_scan(const char *s, size_t len, aigov_version_t *v, int wild,
    char *err, size_t errlen)
{
    char              show[8];
    size_t            n, i;
    uint32_t          num;
    const char       *p, *end, *q;
    aigov_version_t   out;

    if (len == 0) {
        aigov_err(err, errlen, "empty version");
        return AIGOV_ERROR;
    }

    if (len > AIGOV_VERSION_MAX_LEN) {
        aigov_err(err, errlen, "longer than %d bytes", AIGOV_VERSION_MAX_LEN);
        return AIGOV_ERROR;
    }

    memset(&out, 0, sizeof(out));

    p = s;
    end = s + len;

    if (*p == 'v' || *p == 'V') {
        p++;
    }

    for (i = 0; /* void */ ; i++) {

        if (p == end) {
            aigov_err(err, errlen, "a number is missing");
            return AIGOV_ERROR;
        }

        if (wild && (*p == 'x' || *p == 'X' || *p == '*')) {
            p++;

            /* the rest may only be wildcards: "1.x.x", "*.*" */

            while (p < end && *p == '.') {
                p++;

                if (p == end || (*p != 'x' && *p != 'X' && *p != '*')) {
                    aigov_err(err, errlen, "%s after a wildcard",
                              p == end ? "nothing" : "a number");
                    return AIGOV_ERROR;
                }

                if (++i > 2) {
                    aigov_err(err, errlen, "more than three parts");
                    return AIGOV_ERROR;
                }

                p++;
            }

            if (p < end && (*p == '-' || *p == '+')) {
                aigov_err(err, errlen, "a %s after a wildcard",
                          *p == '-' ? "pre-release" : "build");
                return AIGOV_ERROR;
            }

            break;
        }

        if (*p < '0' || *p > '9') {
            aigov_err(err, errlen, "expected a number, found \"%s\"",
                      aigov_show(*p, show));
            return AIGOV_ERROR;
        }

        num = 0;

        for (n = 0; p < end && *p >= '0' && *p <= '9'; p++, n++) {
            if (n == 9) {
                aigov_err(err, errlen, "a number of more than 9 digits");
                return AIGOV_ERROR;
            }

            num = num * 10 + (uint32_t) (*p - '0');
        }

        out.num[i] = num;
        out.given++;

        if (p == end || *p != '.') {
            break;
        }

        if (i == 2) {
            aigov_err(err, errlen, "more than three numbers");
            return AIGOV_ERROR;
        }

        p++;
    }

    if (p < end && *p == '-') {
        p++;

        for (q = p; q < end && *q != '+'; q++) { /* void */ }

        if (aigov_ident_list(p, (size_t) (q - p), err, errlen, "pre-release")
            != AIGOV_OK)
        {
            return AIGOV_ERROR;
        }

        memcpy(out.pre, p, (size_t) (q - p));
        out.pre_len = (uint8_t) (q - p);
        p = q;
    }

    if (p < end && *p == '+') {
        p++;

        if (aigov_ident_list(p, (size_t) (end - p), err, errlen, "build")
            != AIGOV_OK)
        {
            return AIGOV_ERROR;
        }

        p = end;
    }

    if (p < end) {
        aigov_err(err, errlen, "unexpected \"%s\"", aigov_show(*p, show));
        return AIGOV_ERROR;
    }

    *v = out;

    return AIGOV_OK;
}


/* Dot-separated identifiers of [0-9A-Za-z-], none empty. */

static int
aigov_ident_list(const char *s, size_t len, char *err, size_t errlen,
    const char *what)
{
    char    show[8];
    size_t  i, n;

    n = 0;

    for (i = 0; i <= len; i++) {

        if (i == len || s[i] == '.') {
            if (n == 0) {
                aigov_err(err, errlen, "an empty %s identifier", what);
                return AIGOV_ERROR;
            }

            n = 0;
            continue;
        }

        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z')
              || (s[i] >= 'A' && s[i] <= 'Z') || s[i] == '-'))
        {
            aigov_err(err, errlen, "\"%s\" in the %s: use A-Z a-z 0-9 - .",
                      aigov_show(s[i], show), what);
            return AIGOV_ERROR;
        }

        n++;
    }

    return AIGOV_OK;
}


static int
aigov_is_numeric(const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    return 1;
}


/* One pre-release identifier against another (SemVer 11.4). */

static int
aigov_ident_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int  an, bn, c;

    an = aigov_is_numeric(a, alen);
    bn = aigov_is_numeric(b, blen);

    if (an && bn) {
        while (alen > 1 && *a == '0') {
            a++;
            alen--;
        }

        while (blen > 1 && *b == '0') {
            b++;
            blen--;
        }

        if (alen != blen) {
            return (alen < blen) ? -1 : 1;
        }

        c = memcmp(a, b, alen);
        return (c > 0) - (c < 0);
    }

    if (an != bn) {
        return an ? -1 : 1;     /* numeric identifiers sort first */
    }

    c = memcmp(a, b, (alen < blen) ? alen : blen);

    if (c != 0) {
        return (c > 0) - (c < 0);
    }

    return (alen > blen) - (alen < blen);
}


static int
aigov_num_cmp(const aigov_version_t *a, const aigov_version_t *b)
{
    int  i;

    for (i = 0; i < 3; i++) {
        if (a->num[i] != b->num[i]) {
            return (a->num[i] < b->num[i]) ? -1 : 1;
        }
    }

    return 0;
}


int
aigov_version_cmp(const aigov_version_t *a, const aigov_version_t *b)
{
    int          c;
    size_t       i, j, ai, bi;
    const char  *ap, *bp;

    c = aigov_num_cmp(a, b);

    if (c != 0) {
        return c;
    }

    if (a->pre_len == 0 || b->pre_len == 0) {
        /* a release sorts after its pre-releases */
        return (a->pre_len == 0) - (b->pre_len == 0);
    }

    ap = a->pre;
    bp = b->pre;
    i = 0;
    j = 0;

    for ( ;; ) {
        if (i >= a->pre_len || j >= b->pre_len) {
            /* a shorter list sorts first */
            return (i < a->pre_len) - (j < b->pre_len);
        }

        for (ai = i; ai < a->pre_len && ap[ai] != '.'; ai++) { /* void */ }
        for (bi = j; bi < b->pre_len && bp[bi] != '.'; bi++) { /* void */ }

        c = aigov_ident_cmp(ap + i, ai - i, bp + j, bi - j);

        if (c != 0) {
            return c;
        }

        i = ai + 1;
        j = bi + 1;
    }
}


size_t
aigov_version_format(const aigov_version_t *v, char *buf, size_t size)
{
    int  n;

    if (v->pre_len) {
        n = snprintf(buf, size, "%u.%u.%u-%.*s", (unsigned) v->num[0],
                     (unsigned) v->num[1], (unsigned) v->num[2],
                     (int) v->pre_len, v->pre);

    } else {
        n = snprintf(buf, size, "%u.%u.%u", (unsigned) v->num[0],
                     (unsigned) v->num[1], (unsigned) v->num[2]);
    }

    if (n < 0 || (size_t) n >= size) {
        if (size) {
            buf[0] = '\0';
        }

        return 0;
    }

    return (size_t) n;
}


/* Ranges */

int
aigov_range_parse(const char *s, size_t len, aigov_range_t *r, char *err,
    size_t errlen)
{
    int              op;
    char             show[8];
    size_t           ncmp, toklen;
    const char      *p, *end, *tok, *opstr;
    aigov_range_t    out;
    aigov_version_t  v;
    char             verr[96];

    if (len > AIGOV_RANGE_MAX_LEN) {
        aigov_err(err, errlen, "longer than %d bytes", AIGOV_RANGE_MAX_LEN);
        return AIGOV_ERROR;
    }

    memset(&out, 0, sizeof(out));

    p = s;
    end = s + len;

    for ( ;; ) {

        /* one set: comparators up to "||" or the end */

        ncmp = 0;

        for ( ;; ) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
                p++;
            }

            if (p == end || *p == '|') {
                break;
            }

            opstr = p;

            if (end - p >= 2 && p[0] == '>' && p[1] == '=') {
                op = AIGOV_VOP_GE;
                p += 2;

            } else if (end - p >= 2 && p[0] == '<' && p[1] == '=') {
                op = AIGOV_VOP_LE;
                p += 2;

            } else if (*p == '>') {
                op = AIGOV_VOP_GT;
                p++;

            } else if (*p == '<') {
                op = AIGOV_VOP_LT;
                p++;

            } else if (*p == '=') {
                op = AIGOV_VOP_EQ;
                p++;

            } else if (*p == '~') {
                op = AIGOV_VOP_TILDE;
                p++;

            } else if (*p == '^') {
                op = AIGOV_VOP_CARET;
                p++;

            } else {
                op = AIGOV_VOP_NONE;
            }

            while (p < end && (*p == ' ' || *p == '\t')) {
                p++;
            }

            tok = p;

            while (p < end && *p != ' ' && *p != '\t' && *p != ','
                   && *p != '|')
            {
                p++;
            }

            toklen = (size_t) (p - tok);

            if (toklen == 0) {
                aigov_err(err, errlen, "\"%.*s\" without a version",
                          (int) (tok - opstr), opstr);
                return AIGOV_ERROR;
            }

            if (op == AIGOV_VOP_NONE && toklen == 1 && *tok == '-') {
                aigov_err(err, errlen, "hyphen ranges are not supported: "
                          "write \">=1.0 <=2.0\" for \"1.0 - 2.0\"");
                return AIGOV_ERROR;
            }

            if (aigov_version_scan(tok, toklen, &v, 1, verr, sizeof(verr))
                != AIGOV_OK)
            {
                aigov_err(err, errlen, "\"%.*s\": %s", (int) toklen, tok,
                          verr);
                return AIGOV_ERROR;
            }

            if (aigov_range_desugar(&out, op, &v, opstr,
                                    (size_t) (p - opstr), err, errlen)
                != AIGOV_OK)
            {
                return AIGOV_ERROR;
            }

            ncmp++;
        }

        if (ncmp == 0) {
            aigov_err(err, errlen, (out.nsets == 0 && p == end)
                                   ? "empty range"
                                   : "an empty alternative around \"||\"");
            return AIGOV_ERROR;
        }

        if (out.nsets == AIGOV_RANGE_MAX_SETS) {
            aigov_err(err, errlen, "more than %d alternatives",
                      AIGOV_RANGE_MAX_SETS);
            return AIGOV_ERROR;
        }

        out.end[out.nsets++] = out.n;

        if (p == end) {
            break;
        }

        /* *p == '|' */

        if (end - p < 2 || p[1] != '|') {
            aigov_err(err, errlen, "\"%s\" alone: alternatives are "
                      "separated by \"||\"", aigov_show(*p, show));
            return AIGOV_ERROR;
        }

        p += 2;
    }

    *r = out;

    return AIGOV_OK;
}


static int
aigov_range_push(aigov_range_t *r, int op, uint32_t major, uint32_t minor,
    uint32_t patch, const aigov_version_t *pre)
{
    aigov_vbound_t  *b;

    if (r->n == AIGOV_RANGE_MAX_BOUNDS) {
        return AIGOV_ERROR;
    }

    b = &r->bound[r->n++];

    memset(b, 0, sizeof(aigov_vbound_t));

    b->op = (uint8_t) op;
    b->v.num[0] = major;
    b->v.num[1] = minor;
    b->v.num[2] = patch;
    b->v.given = 3;

    if (pre && pre->pre_len) {
        memcpy(b->v.pre, pre->pre, pre->pre_len);
        b->v.pre_len = pre->pre_len;
    }

    return AIGOV_OK;
}


/* One comparator into bounds, by the table in aigov_version.h. */

static int
aigov_range_desugar(aigov_range_t *r, int op, const aigov_version_t *v,
    const char *tok, size_t toklen, char *err, size_t errlen)
{
    int            rc;
    uint32_t       M, m, P;
    unsigned       g;
    aigov_range_t  save;

    g = v->pre_len ? 3 : v->given;
    M = v->num[0];
    m = v->num[1];
    P = v->num[2];

    if (g == 0) {
        if (op == AIGOV_VOP_GT || op == AIGOV_VOP_LT) {
            aigov_err(err, errlen, "\"%.*s\" matches no version",
                      (int) toklen, tok);
            return AIGOV_ERROR;
        }

        return AIGOV_OK;        /* any version */
    }

    save = *r;

    switch (op) {

    case AIGOV_VOP_NONE:
    case AIGOV_VOP_EQ:
        if (g == 3) {
            rc = aigov_range_push(r, AIGOV_VOP_EQ, M, m, P, v);

        } else if (g == 2) {
            rc = aigov_range_push(r, AIGOV_VOP_GE, M, m, 0, NULL)
                 | aigov_range_push(r, AIGOV_VOP_LT, M, m + 1, 0, NULL);

        } else {
            rc = aigov_range_push(r, AIGOV_VOP_GE, M, 0, 0, NULL)
                 | aigov_range_push(r, AIGOV_VOP_LT, M + 1, 0, 0, NULL);
        }

        break;

    case AIGOV_VOP_GE:
        rc = aigov_range_push(r, AIGOV_VOP_GE, M, m, P, v);
        break;

    case AIGOV_VOP_LT:
        rc = aigov_range_push(r, AIGOV_VOP_LT, M, m, P, v);
        break;

    case AIGOV_VOP_GT:
        rc = (g == 3) ? aigov_range_push(r, AIGOV_VOP_GT, M, m, P, v)
           : (g == 2) ? aigov_range_push(r, AIGOV_VOP_GE, M, m + 1, 0, NULL)
           : aigov_range_push(r, AIGOV_VOP_GE, M + 1, 0, 0, NULL);
        break;

    case AIGOV_VOP_LE:
        rc = (g == 3) ? aigov_range_push(r, AIGOV_VOP_LE, M, m, P, v)
           : (g == 2) ? aigov_range_push(r, AIGOV_VOP_LT, M, m + 1, 0, NULL)
           : aigov_range_push(r, AIGOV_VOP_LT, M + 1, 0, 0, NULL);
        break;

    case AIGOV_VOP_TILDE:
        rc = aigov_range_push(r, AIGOV_VOP_GE, M, m, P, v)
             | ((g == 1) ? aigov_range_push(r, AIGOV_VOP_LT, M + 1, 0, 0, NULL)
                : aigov_range_push(r, AIGOV_VOP_LT, M, m + 1, 0, NULL));
        break;

    default: /* AIGOV_VOP_CARET */
        rc = aigov_range_push(r, AIGOV_VOP_GE, M, m, P, v);

        if (M > 0 || g == 1) {
            rc |= aigov_range_push(r, AIGOV_VOP_LT, M + 1, 0, 0, NULL);

        } else if (m > 0 || g == 2) {
            rc |= aigov_range_push(r, AIGOV_VOP_LT, 0, m + 1, 0, NULL);

        } else {
            rc |= aigov_range_push(r, AIGOV_VOP_LT, 0, 0, P + 1, NULL);
        }

        break;
    }

    if (rc != AIGOV_OK) {
        *r = save;
        aigov_err(err, errlen, "more than %d bounds (\"1.x\" and \"~1.2\" "
                  "make two)", AIGOV_RANGE_MAX_BOUNDS);
        return AIGOV_ERROR;
    }

    return AIGOV_OK;
}


static int
aigov_bound_ok(const aigov_vbound_t *b, const aigov_version_t *v)
{
    int  c;

    /* against a release bound a pre-release counts as its release */
    c = (b->v.pre_len == 0) ? aigov_num_cmp(v, &b->v)
                            : aigov_version_cmp(v, &b->v);

    switch (b->op) {
    case AIGOV_VOP_GE:
        return c >= 0;
    case AIGOV_VOP_GT:
        return c > 0;
    case AIGOV_VOP_LE:
        return c <= 0;
    case AIGOV_VOP_LT:
        return c < 0;
    default:
        return c == 0;
    }
}


int
aigov_range_match(const aigov_range_t *r, const aigov_version_t *v)
{
    size_t  set, i, start;

    start = 0;

    for (set = 0; set < r->nsets; set++) {

        for (i = start; i < r->end[set]; i++) {
            if (!aigov_bound_ok(&r->bound[i], v)) {
                break;
            }
        }

        if (i == r->end[set]) {
            return 1;
        }

        start = r->end[set];
    }

    return 0;
}


void
aigov_range_min(aigov_range_t *r, const aigov_version_t *v)
{
    memset(r, 0, sizeof(aigov_range_t));

    (void) aigov_range_push(r, AIGOV_VOP_GE, v->num[0], v->num[1], v->num[2],
                            v);
    r->nsets = 1;
    r->end[0] = 1;
}


/* Dates */

static int
aigov_digits(const char *s, size_t n, int *out)
{
    size_t  i;
    int     v;

    v = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return AIGOV_ERROR;
        }

        v = v * 10 + (s[i] - '0');
    }

    *out = v;

    return AIGOV_OK;
}


int
aigov_parse_date(const char *s, size_t len, int64_t *t)
{
    int      y, mo, d, h, mi, sec, leap;
    size_t   i;
    int64_t  days, yy, era, yoe, doy, doe, v;

    static const int  mdays[] = { 31, 28, 31, 30, 31, 30,
                                  31, 31, 30, 31, 30, 31 };

    if (len >= 2 && s[0] == '@') {
        if (len > 13) {
            return AIGOV_ERROR;         /* 12 digits: year 33658 */
        }

        v = 0;

        for (i = 1; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return AIGOV_ERROR;
            }

            v = v * 10 + (s[i] - '0');
        }

        if (v > 253402300799) {         /* 9999-12-31T23:59:59Z */
            return AIGOV_ERROR;
        }

        *t = v;
        return AIGOV_OK;
    }

    h = 0;
    mi = 0;
    sec = 0;

    if (len != 10 && len != 20) {
        return AIGOV_ERROR;
    }

    if (aigov_digits(s, 4, &y) != AIGOV_OK || s[4] != '-'
        || aigov_digits(s + 5, 2, &mo) != AIGOV_OK || s[7] != '-'
        || aigov_digits(s + 8, 2, &d) != AIGOV_OK)
    {
        return AIGOV_ERROR;
    }

    if (len == 20
        && (s[10] != 'T' || aigov_digits(s + 11, 2, &h) != AIGOV_OK
            || s[13] != ':' || aigov_digits(s + 14, 2, &mi) != AIGOV_OK
            || s[16] != ':' || aigov_digits(s + 17, 2, &sec) != AIGOV_OK
            || s[19] != 'Z'))
    {
        return AIGOV_ERROR;
    }

    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

    if (y < 1970 || mo < 1 || mo > 12 || d < 1
        || d > mdays[mo - 1] + (mo == 2 && leap)
        || h > 23 || mi > 59 || sec > 59)
    {
        return AIGOV_ERROR;
    }

    /* days from the civil date (H. Hinnant's algorithm) */

    yy = y - (mo <= 2);
    era = yy / 400;
    yoe = yy - era * 400;
    doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    days = era * 146097 + doe - 719468;

    *t = days * 86400 + h * 3600 + mi * 60 + sec;

    return AIGOV_OK;
}


/* Paths and adaptation */

static int
aigov_is_key_char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-';
}


int
aigov_path_parse(const char *s, size_t len, aigov_path_t *p, char *err,
    size_t errlen)
{
    int            neg;
    char           show[8];
    size_t         n;
    int32_t        index;
    const char    *q, *end, *key;
    aigov_path_t   out;
    aigov_step_t  *st;

    if (len == 0) {
        aigov_err(err, errlen, "empty path");
        return AIGOV_ERROR;
    }

    if (len > AIGOV_PATH_MAX_LEN) {
        aigov_err(err, errlen, "longer than %d bytes", AIGOV_PATH_MAX_LEN);
        return AIGOV_ERROR;
    }

    memset(&out, 0, sizeof(out));

    q = s;
    end = s + len;

    if (*q == '$') {
        q++;

        if (q == end) {
            aigov_err(err, errlen, "\"$\" is the whole document: name a "
                      "member");
            return AIGOV_ERROR;
        }

        if (*q == '.') {
            q++;

        } else if (*q != '[') {
            aigov_err(err, errlen, "\"$\" must be followed by \".\" or "
                      "\"[\"");
            return AIGOV_ERROR;
        }

    } else if (*q == '.') {
        aigov_err(err, errlen, "a path starts with a key or \"[\"");
        return AIGOV_ERROR;
    }

    for ( ;; ) {

        if (out.n == AIGOV_PATH_MAX_STEPS) {
            aigov_err(err, errlen, "more than %d steps",
                      AIGOV_PATH_MAX_STEPS);
            return AIGOV_ERROR;
        }

        st = &out.step[out.n];

        if (q < end && *q == '[') {
            q++;

            if (q < end && *q == '*') {
                q++;
                st->type = AIGOV_STEP_ALL;

            } else {
                neg = (q < end && *q == '-');
                q += neg;
                index = 0;

                for (n = 0; q < end && *q >= '0' && *q <= '9'; q++, n++) {
                    if (n == 9) {
                        aigov_err(err, errlen, "an index of more than 9 "
                                  "digits");
                        return AIGOV_ERROR;
                    }

                    index = index * 10 + (*q - '0');
                }

                if (n == 0) {
                    aigov_err(err, errlen, "\"[\" must hold N, -N or *");
                    return AIGOV_ERROR;
                }

                if (neg && index == 0) {
                    aigov_err(err, errlen, "\"[-0]\": the last element is "
                              "[-1]");
                    return AIGOV_ERROR;
                }

                st->type = AIGOV_STEP_INDEX;
                st->index = neg ? -index : index;
            }

            if (q == end || *q != ']') {
                aigov_err(err, errlen, "\"[\" without \"]\"");
                return AIGOV_ERROR;
            }

            q++;

        } else {
            key = q;

            while (q < end && aigov_is_key_char(*q)) {
                q++;
            }

            n = (size_t) (q - key);

            if (n == 0) {
                if (q == end) {
                    aigov_err(err, errlen, "a key is missing at the end");

                } else {
                    aigov_err(err, errlen, "\"%s\" in a key: use A-Z a-z "
                              "0-9 _ -", aigov_show(*q, show));
                }

                return AIGOV_ERROR;
            }

            if (n > AIGOV_PATH_KEY_MAX) {
                aigov_err(err, errlen, "a key longer than %d bytes",
                          AIGOV_PATH_KEY_MAX);
                return AIGOV_ERROR;
            }

            st->type = AIGOV_STEP_KEY;
            st->key = key;
            st->len = (uint8_t) n;
        }

        out.n++;

        if (q == end) {
            break;
        }

        if (*q == '.') {
            q++;
            continue;
        }

        if (*q != '[') {
            aigov_err(err, errlen, "unexpected \"%s\"", aigov_show(*q, show));
            return AIGOV_ERROR;
        }
    }

    *p = out;

    return AIGOV_OK;
}


static int
aigov_step_eq(const aigov_step_t *a, const aigov_step_t *b)
{
    if (a->type != b->type) {
        return 0;
    }

    switch (a->type) {
    case AIGOV_STEP_KEY:
        return a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
    case AIGOV_STEP_INDEX:
        return a->index == b->index;
    default:
        return 1;
    }
}


int
aigov_adapt_op_parse(const char *s, size_t len, aigov_adapt_op_t *op,
    char *err, size_t errlen)
{
    size_t            i, n, flen;
    const char       *colon, *to;
    aigov_adapt_op_t  out;
    char              perr[96];

    memset(&out, 0, sizeof(out));

    if (len >= 7 && memcmp(s, "remove=", 7) == 0) {
        out.type = AIGOV_ADAPT_REMOVE;

        if (aigov_path_parse(s + 7, len - 7, &out.from, perr, sizeof(perr))
            != AIGOV_OK)
        {
            aigov_err(err, errlen, "invalid path \"%.*s\": %s",
                      (int) (len - 7), s + 7, perr);
            return AIGOV_ERROR;
        }

        if (out.from.step[out.from.n - 1].type != AIGOV_STEP_KEY) {
            aigov_err(err, errlen, "path \"%.*s\" must end in a key",
                      (int) (len - 7), s + 7);
            return AIGOV_ERROR;
        }

        *op = out;
        return AIGOV_OK;
    }

    if (len < 7 || memcmp(s, "rename=", 7) != 0) {
        return AIGOV_DECLINED;
    }

    out.type = AIGOV_ADAPT_RENAME;
    s += 7;
    len -= 7;

    colon = memchr(s, ':', len);

    if (colon == NULL) {
        aigov_err(err, errlen, "rename needs FROM:TO");
        return AIGOV_ERROR;
    }

    flen = (size_t) (colon - s);
    to = colon + 1;
    n = len - flen - 1;

    if (aigov_path_parse(s, flen, &out.from, perr, sizeof(perr)) != AIGOV_OK)
    {
        aigov_err(err, errlen, "invalid path \"%.*s\": %s", (int) flen, s,
                  perr);
        return AIGOV_ERROR;
    }

    if (out.from.step[out.from.n - 1].type != AIGOV_STEP_KEY) {
        aigov_err(err, errlen, "path \"%.*s\" must end in a key", (int) flen,
                  s);
        return AIGOV_ERROR;
    }

    for (i = 0; i < n && aigov_is_key_char(to[i]); i++) { /* void */ }

    if (n && i == n) {
        /* a bare key: a new name in the same object */

        if (n > AIGOV_PATH_KEY_MAX) {
            aigov_err(err, errlen, "a key longer than %d bytes",
                      AIGOV_PATH_KEY_MAX);
            return AIGOV_ERROR;
        }

        out.to = out.from;
        out.to.step[out.to.n - 1].key = to;
        out.to.step[out.to.n - 1].len = (uint8_t) n;

    } else {
        if (aigov_path_parse(to, n, &out.to, perr, sizeof(perr))
            != AIGOV_OK)
        {
            aigov_err(err, errlen, "invalid path \"%.*s\": %s", (int) n, to,
                      perr);
            return AIGOV_ERROR;
        }

        if (out.to.step[out.to.n - 1].type != AIGOV_STEP_KEY) {
            aigov_err(err, errlen, "path \"%.*s\" must end in a key",
                      (int) n, to);
            return AIGOV_ERROR;
        }
    }

    /* the shared leading steps, short of either path's last step */

    n = (out.from.n < out.to.n) ? out.from.n : out.to.n;

    for (i = 0; i + 1 < n && aigov_step_eq(&out.from.step[i], &out.to.step[i]);
         i++)
    { /* void */ }

    out.common = (uint8_t) i;

    if (out.from.n == out.to.n && i == n - 1
        && aigov_step_eq(&out.from.step[i], &out.to.step[i]))
    {
        aigov_err(err, errlen, "renames \"%.*s\" to itself", (int) flen, s);
        return AIGOV_ERROR;
    }

    for (i = out.common; i < out.from.n; i++) {
        if (out.from.step[i].type == AIGOV_STEP_ALL) {
            goto wildcard;
        }
    }

    for (i = out.common; i < out.to.n; i++) {
        if (out.to.step[i].type == AIGOV_STEP_ALL) {
            goto wildcard;
        }
    }

    *op = out;

    return AIGOV_OK;

wildcard:

    aigov_err(err, errlen, "a \"[*]\" must be among the leading steps FROM "
              "and TO share");
    return AIGOV_ERROR;
}


json_t *
aigov_adapt_load(const char *body, size_t len)
{
    json_error_t  e;

    return json_loadb(body, len,
                      JSON_REJECT_DUPLICATES | JSON_DECODE_ANY
                      | JSON_ALLOW_NUL, &e);
}


/*
 * The digits a real needs to read back as the same double: 15 for most
 * (jansson's default, 17, would write 0.1 as 0.10000000000000001).
 */

static int
aigov_real_digits(const json_t *j, int digits)
{
    char         buf[40];
    void        *it;
    size_t       i, n;
    double       d;

    if (digits == 17) {
        return digits;
    }

    switch (json_typeof(j)) {

    case JSON_REAL:
        d = json_real_value(j);

        while (digits < 17) {
            snprintf(buf, sizeof(buf), "%.*g", digits, d);

            if (strtod(buf, NULL) == d) {
                break;
            }

            digits++;
        }

        return digits;

    case JSON_ARRAY:
        n = json_array_size(j);

        for (i = 0; i < n && digits < 17; i++) {
            digits = aigov_real_digits(json_array_get(j, i), digits);
        }

        return digits;

    case JSON_OBJECT:
        for (it = json_object_iter((json_t *) j); it && digits < 17;
             it = json_object_iter_next((json_t *) j, it))
        {
            digits = aigov_real_digits(json_object_iter_value(it), digits);
        }

        return digits;

    default:
        return digits;
    }
}


size_t
aigov_adapt_dump(const json_t *doc, char *buf, size_t size)
{
    int  digits;

    digits = aigov_real_digits(doc, 15);

    return json_dumpb(doc, buf, size, JSON_COMPACT | JSON_ENCODE_ANY
                                      | JSON_REAL_PRECISION(digits));
}


size_t
aigov_adapt_apply(json_t *doc, const aigov_adapt_op_t *op)
{
    if (doc == NULL) {
        return 0;
    }

    if (op->type == AIGOV_ADAPT_REMOVE) {
        return aigov_adapt_walk(doc, op, &op->from, 0, op->from.n - 1);
    }

    return aigov_adapt_walk(doc, op, &op->from, 0, op->common);
}


/* One step down from node, NULL when it leads nowhere (never a [*]). */

static json_t *
aigov_adapt_step(json_t *node, const aigov_step_t *st)
{
    size_t   size;
    int64_t  i;

    if (st->type == AIGOV_STEP_KEY) {
        return json_is_object(node) ? json_object_getn(node, st->key, st->len)
                                    : NULL;
    }

    if (!json_is_array(node) || st->type != AIGOV_STEP_INDEX) {
        return NULL;
    }

    size = json_array_size(node);
    i = st->index;

    if (i < 0) {
        i += (int64_t) size;
    }

    if (i < 0 || (uint64_t) i >= size) {
        return NULL;
    }

    return json_array_get(node, (size_t) i);
}


/*
 * Follows p from step i to step stop, expanding [*], and acts where it
 * arrives: remove deletes the last key there, rename moves from there.
 */

static size_t
aigov_adapt_walk(json_t *node, const aigov_adapt_op_t *op,
    const aigov_path_t *p, size_t i, size_t stop)
{
    size_t               k, n, changed;
    json_t              *child;
    const aigov_step_t  *last;

    if (i == stop) {
        if (op->type == AIGOV_ADAPT_RENAME) {
            return aigov_adapt_move(node, op);
        }

        last = &p->step[p->n - 1];

        return (json_is_object(node)
                && json_object_deln(node, last->key, last->len) == 0);
    }

    if (p->step[i].type == AIGOV_STEP_ALL) {
        if (!json_is_array(node)) {
            return 0;
        }

        changed = 0;
        n = json_array_size(node);

        for (k = 0; k < n; k++) {
            changed += aigov_adapt_walk(json_array_get(node, k), op, p, i + 1,
                                        stop);
        }

        return changed;
    }

    child = aigov_adapt_step(node, &p->step[i]);

    if (child == NULL) {
        return 0;
    }

    return aigov_adapt_walk(child, op, p, i + 1, stop);
}


static size_t
aigov_adapt_move(json_t *anchor, const aigov_adapt_op_t *op)
{
    size_t               i;
    json_t              *src, *dst, *v, *next;
    const aigov_step_t  *fk, *tk;

    fk = &op->from.step[op->from.n - 1];
    tk = &op->to.step[op->to.n - 1];

    src = anchor;

    for (i = op->common; i + 1 < op->from.n; i++) {
        src = aigov_adapt_step(src, &op->from.step[i]);

        if (src == NULL) {
            return 0;
        }
    }

    if (!json_is_object(src)) {
        return 0;
    }

    v = json_object_getn(src, fk->key, fk->len);

    if (v == NULL) {
        return 0;
    }

    if (op->common + 1u == op->from.n && op->common + 1u == op->to.n) {
        /* a rename within one object keeps the member's place */
        return aigov_adapt_rename_here(src, fk, tk) == 0;
    }

    /*
     * Can TO be reached?  Existing steps are followed, missing keys will
     * be created (only keys can be), anything else leaves this place as
     * it was.
     */

    dst = anchor;

    for (i = op->common; i + 1 < op->to.n && dst; i++) {
        next = aigov_adapt_step(dst, &op->to.step[i]);

        if (next == NULL) {
            if (op->to.step[i].type != AIGOV_STEP_KEY || !json_is_object(dst))
            {
                return 0;
            }

            for (i++; i + 1 < op->to.n; i++) {
                if (op->to.step[i].type != AIGOV_STEP_KEY) {
                    return 0;
                }
            }

            break;
        }

        dst = next;
    }

    if (!json_is_object(dst)) {
        return 0;
    }

    json_incref(v);

    if (json_object_deln(src, fk->key, fk->len) != 0) {
        json_decref(v);
        return 0;
    }

    dst = anchor;

    for (i = op->common; i + 1 < op->to.n; i++) {
        next = aigov_adapt_step(dst, &op->to.step[i]);

        if (next == NULL) {
            if (!json_is_object(dst)) {
                goto restore;
            }

            next = json_object();

            if (next == NULL
                || json_object_setn_new(dst, op->to.step[i].key,
                                        op->to.step[i].len, next)
                   != 0)
            {
                goto restore;
            }
        }

        dst = next;
    }

    if (!json_is_object(dst)) {
        goto restore;
    }

    /* steals the reference taken above */
    if (json_object_setn_new(dst, tk->key, tk->len, v) != 0) {
        return 0;
    }

    return 1;

restore:

    /* TO moved away under us (TO inside FROM): put the value back */
    (void) json_object_setn_new(src, fk->key, fk->len, v);

    return 0;
}


/*
 * Renames member from to to in obj, in its place: the members are copied
 * in order into a new object, which then replaces obj's contents.  A
 * member already called to is replaced.  -1 on allocation failure (obj is
 * unchanged then).
 */

static int
aigov_adapt_rename_here(json_t *obj, const aigov_step_t *from,
    const aigov_step_t *to)
{
    void        *it;
    size_t       klen;
    json_t      *tmp;
    const char  *key;

    tmp = json_object();
    if (tmp == NULL) {
        return -1;
    }

    for (it = json_object_iter(obj); it; it = json_object_iter_next(obj, it))
    {
        key = json_object_iter_key(it);
        klen = json_object_iter_key_len(it);

        if (klen == to->len && memcmp(key, to->key, klen) == 0) {
            continue;           /* replaced by the renamed member */
        }

        if (klen == from->len && memcmp(key, from->key, klen) == 0) {
            key = to->key;
            klen = to->len;
        }

        if (json_object_setn(tmp, key, klen, json_object_iter_value(it))
            != 0)
        {
            json_decref(tmp);
            return -1;
        }
    }

    json_object_clear(obj);

    for (it = json_object_iter(tmp); it; it = json_object_iter_next(tmp, it))
    {
        (void) json_object_setn(obj, json_object_iter_key(it),
                                json_object_iter_key_len(it),
                                json_object_iter_value(it));
    }

    json_decref(tmp);

    return 0;
}
