/*
 * ngx_aigov: canonical JSON for cache keys (include/aigov_canon.h has the
 * rules).  A recursive-descent parser builds a small tree in an arena
 * (stack first, then malloc() blocks), object members are sorted, and the
 * tree is written out through a 4 KiB buffer.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_canon.h"
#include "aigov_core.h"


#define AIGOV_CANON_BLOCK      16384
#define AIGOV_CANON_STACK      4096
#define AIGOV_CANON_OUT        4096
#define AIGOV_CANON_MAX_EXP    999999999LL

#define aigov_canon_align(n)   (((n) + 15) & ~((size_t) 15))


typedef enum {
    AIGOV_CANON_NULL = 0,
    AIGOV_CANON_TRUE,
    AIGOV_CANON_FALSE,
    AIGOV_CANON_NUMBER,
    AIGOV_CANON_STRING,
    AIGOV_CANON_ARRAY,
    AIGOV_CANON_OBJECT
} aigov_canon_type_e;


typedef struct aigov_canon_node_s  aigov_canon_node_t;

struct aigov_canon_node_s {
    aigov_canon_type_e         type;
    const char                *s;         /* string bytes, number text */
    size_t                     len;
    const char                *key;       /* member of an object */
    size_t                     key_len;
    aigov_canon_node_t        *child;     /* array, object */
    aigov_canon_node_t        *next;
    size_t                     n;         /* children */
};


typedef struct aigov_canon_block_s  aigov_canon_block_t;

struct aigov_canon_block_s {
    aigov_canon_block_t       *next;
};


typedef struct {
    const unsigned char       *start;
    const unsigned char       *p;
    const unsigned char       *end;

    char                      *pos;       /* arena */
    char                      *last;
    aigov_canon_block_t       *blocks;

    int                        rc;
    const char                *msg;
    size_t                     at;
} aigov_canon_parser_t;


typedef struct {
    aigov_canon_write_pt       write;
    void                      *data;
    size_t                     len;
    char                       buf[AIGOV_CANON_OUT];
} aigov_canon_out_t;


static aigov_canon_node_t *aigov_canon_value(aigov_canon_parser_t *cp,
    unsigned depth);
static int aigov_canon_string(aigov_canon_parser_t *cp, const char **s,
    size_t *len);
static int aigov_canon_number(aigov_canon_parser_t *cp,
    aigov_canon_node_t *node);
static void aigov_canon_emit(aigov_canon_out_t *out, aigov_canon_node_t *n);


static void *
aigov_canon_alloc(aigov_canon_parser_t *cp, size_t size)
{
    char                 *p;
    size_t                bsize, head;
    aigov_canon_block_t  *b;

    size = aigov_canon_align(size);

    if ((size_t) (cp->last - cp->pos) < size) {
        head = aigov_canon_align(sizeof(aigov_canon_block_t));
        bsize = size > AIGOV_CANON_BLOCK ? size : AIGOV_CANON_BLOCK;

        if (bsize > SIZE_MAX - head) {
            return NULL;
        }

        b = malloc(head + bsize);
        if (b == NULL) {
            return NULL;
        }

        b->next = cp->blocks;
        cp->blocks = b;
        cp->pos = (char *) b + head;
        cp->last = cp->pos + bsize;
    }

    p = cp->pos;
    cp->pos += size;

    return p;
}


static void
aigov_canon_free(aigov_canon_parser_t *cp)
{
    aigov_canon_block_t  *b, *next;

    for (b = cp->blocks; b; b = next) {
        next = b->next;
        free(b);
    }

    cp->blocks = NULL;
}


static void *
aigov_canon_fail(aigov_canon_parser_t *cp, int rc, const char *msg)
{
    if (cp->rc == AIGOV_CANON_OK) {
        cp->rc = rc;
        cp->msg = msg;
        cp->at = cp->p - cp->start;
    }

    return NULL;
}


static void
aigov_canon_ws(aigov_canon_parser_t *cp)
{
    while (cp->p < cp->end
           && (*cp->p == ' ' || *cp->p == '\t' || *cp->p == '\n'
               || *cp->p == '\r'))
    {
        cp->p++;
    }
}


static int
aigov_canon_literal(aigov_canon_parser_t *cp, const char *word, size_t len)
{
    if ((size_t) (cp->end - cp->p) < len || memcmp(cp->p, word, len) != 0) {
        aigov_canon_fail(cp, AIGOV_CANON_INVALID, "unexpected character");
        return -1;
    }

    cp->p += len;

    return 0;
}


static int
aigov_canon_key_cmp(const void *one, const void *two)
{
    int                        c;
    size_t                     len;
    const aigov_canon_node_t  *a = *(aigov_canon_node_t * const *) one;
    const aigov_canon_node_t  *b = *(aigov_canon_node_t * const *) two;

    len = a->key_len < b->key_len ? a->key_len : b->key_len;

    c = len ? memcmp(a->key, b->key, len) : 0;
    if (c != 0) {
        return c;
    }

    return (a->key_len > b->key_len) - (a->key_len < b->key_len);
}


static aigov_canon_node_t *
aigov_canon_object(aigov_canon_parser_t *cp, aigov_canon_node_t *node,
    unsigned depth)
{
    size_t               i;
    const char          *key;
    size_t               key_len;
    aigov_canon_node_t  *v, *last, **m;

    cp->p++;                                 /* '{' */
    aigov_canon_ws(cp);

    if (cp->p < cp->end && *cp->p == '}') {
        cp->p++;
        return node;
    }

    last = NULL;

    for ( ;; ) {
        if (cp->p >= cp->end || *cp->p != '"') {
            return aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                    "expected a string key");
        }

        if (aigov_canon_string(cp, &key, &key_len) != 0) {
            return NULL;
        }

        aigov_canon_ws(cp);

        if (cp->p >= cp->end || *cp->p != ':') {
            return aigov_canon_fail(cp, AIGOV_CANON_INVALID, "expected ':'");
        }

        cp->p++;
        aigov_canon_ws(cp);

        v = aigov_canon_value(cp, depth + 1);
        if (v == NULL) {
            return NULL;
        }

        v->key = key;
        v->key_len = key_len;

        if (last) {
            last->next = v;
        } else {
            node->child = v;
        }

        last = v;
        node->n++;

        aigov_canon_ws(cp);

        if (cp->p < cp->end && *cp->p == ',') {
            cp->p++;
            aigov_canon_ws(cp);
            continue;
        }

        if (cp->p < cp->end && *cp->p == '}') {
            cp->p++;
            break;
        }

        return aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                "expected ',' or '}'");
    }

    if (node->n < 2) {
        return node;
    }

    m = aigov_canon_alloc(cp, node->n * sizeof(aigov_canon_node_t *));
    if (m == NULL) {
        return aigov_canon_fail(cp, AIGOV_CANON_NOMEM, "out of memory");
    }

    i = 0;
    for (v = node->child; v; v = v->next) {
        m[i++] = v;
    }

    qsort(m, node->n, sizeof(aigov_canon_node_t *), aigov_canon_key_cmp);

    for (i = 1; i < node->n; i++) {
        if (aigov_canon_key_cmp(&m[i - 1], &m[i]) == 0) {
            return aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                    "duplicate key in an object");
        }

        m[i - 1]->next = m[i];
    }

    m[node->n - 1]->next = NULL;
    node->child = m[0];

    return node;
}


static aigov_canon_node_t *
aigov_canon_array(aigov_canon_parser_t *cp, aigov_canon_node_t *node,
    unsigned depth)
{
    aigov_canon_node_t  *v, *last;

    cp->p++;                                 /* '[' */
    aigov_canon_ws(cp);

    if (cp->p < cp->end && *cp->p == ']') {
        cp->p++;
        return node;
    }

    last = NULL;

    for ( ;; ) {
        v = aigov_canon_value(cp, depth + 1);
        if (v == NULL) {
            return NULL;
        }

        if (last) {
            last->next = v;
        } else {
            node->child = v;
        }

        last = v;
        node->n++;

        aigov_canon_ws(cp);

        if (cp->p < cp->end && *cp->p == ',') {
            cp->p++;
            aigov_canon_ws(cp);
            continue;
        }

        if (cp->p < cp->end && *cp->p == ']') {
            cp->p++;
            return node;
        }

        return aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                "expected ',' or ']'");
    }
}


static aigov_canon_node_t *
aigov_canon_value(aigov_canon_parser_t *cp, unsigned depth)
{
    aigov_canon_node_t  *node;

    if (depth > AIGOV_CANON_MAX_DEPTH) {
        return aigov_canon_fail(cp, AIGOV_CANON_TOO_DEEP,
                                "nested too deeply");
    }

    if (cp->p >= cp->end) {
        return aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                "unexpected end of input");
    }

    node = aigov_canon_alloc(cp, sizeof(aigov_canon_node_t));
    if (node == NULL) {
        return aigov_canon_fail(cp, AIGOV_CANON_NOMEM, "out of memory");
    }

    memset(node, 0, sizeof(aigov_canon_node_t));

    switch (*cp->p) {

    case '{':
        node->type = AIGOV_CANON_OBJECT;
        return aigov_canon_object(cp, node, depth);

    case '[':
        node->type = AIGOV_CANON_ARRAY;
        return aigov_canon_array(cp, node, depth);

    case '"':
        node->type = AIGOV_CANON_STRING;
        return aigov_canon_string(cp, &node->s, &node->len) == 0
               ? node : NULL;

    case 't':
        node->type = AIGOV_CANON_TRUE;
        return aigov_canon_literal(cp, "true", 4) == 0 ? node : NULL;

    case 'f':
        node->type = AIGOV_CANON_FALSE;
        return aigov_canon_literal(cp, "false", 5) == 0 ? node : NULL;

    case 'n':
        node->type = AIGOV_CANON_NULL;
        return aigov_canon_literal(cp, "null", 4) == 0 ? node : NULL;

    default:
        if (*cp->p == '-' || (*cp->p >= '0' && *cp->p <= '9')) {
            node->type = AIGOV_CANON_NUMBER;
            return aigov_canon_number(cp, node) == 0 ? node : NULL;
        }

        return aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                "unexpected character");
    }
}


/* The length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */

static size_t
aigov_canon_utf8(const unsigned char *p, const unsigned char *end)
{
    size_t         n, i;
    unsigned char  lo, hi;

    lo = 0x80;
    hi = 0xbf;

    if (*p >= 0xc2 && *p <= 0xdf) {
        n = 2;

    } else if (*p >= 0xe0 && *p <= 0xef) {
        n = 3;
        if (*p == 0xe0) {
            lo = 0xa0;                       /* overlong */
        } else if (*p == 0xed) {
            hi = 0x9f;                       /* surrogates */
        }

    } else if (*p >= 0xf0 && *p <= 0xf4) {
        n = 4;
        if (*p == 0xf0) {
            lo = 0x90;                       /* overlong */
        } else if (*p == 0xf4) {
            hi = 0x8f;                       /* above U+10FFFF */
        }

    } else {
        return 0;
    }

    if ((size_t) (end - p) < n || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return n;
}


static int
aigov_canon_hex4(const unsigned char *p, uint32_t *out)
{
    int       i;
    uint32_t  v;

    v = 0;

    for (i = 0; i < 4; i++) {
        v <<= 4;

        if (p[i] >= '0' && p[i] <= '9') {
            v |= p[i] - '0';

        } else if (p[i] >= 'a' && p[i] <= 'f') {
            v |= p[i] - 'a' + 10;

        } else if (p[i] >= 'A' && p[i] <= 'F') {
            v |= p[i] - 'A' + 10;

        } else {
            return -1;
        }
    }

    *out = v;

    return 0;
}


static char *
aigov_canon_put_utf8(char *d, uint32_t c)
{
    if (c < 0x80) {
        *d++ = (char) c;

    } else if (c < 0x800) {
        *d++ = (char) (0xc0 | (c >> 6));
        *d++ = (char) (0x80 | (c & 0x3f));

    } else if (c < 0x10000) {
        *d++ = (char) (0xe0 | (c >> 12));
        *d++ = (char) (0x80 | ((c >> 6) & 0x3f));
        *d++ = (char) (0x80 | (c & 0x3f));

    } else {
        *d++ = (char) (0xf0 | (c >> 18));
        *d++ = (char) (0x80 | ((c >> 12) & 0x3f));
        *d++ = (char) (0x80 | ((c >> 6) & 0x3f));
        *d++ = (char) (0x80 | (c & 0x3f));
    }

    return d;
}


/*
 * A string at cp->p ('"'): *s and *len are its unescaped UTF-8 bytes,
 * pointing into the input when it has no escapes.
 */

static int
aigov_canon_string(aigov_canon_parser_t *cp, const char **s, size_t *len)
{
    char                 *d, *buf;
    size_t                n;
    uint32_t              c, lo;
    const unsigned char  *p, *begin, *q;
    int                   escapes;

    begin = ++cp->p;
    escapes = 0;

    /* pass 1: find the end, check the raw bytes and the escape syntax */

    for (p = begin; ; ) {

        if (p >= cp->end) {
            cp->p = p;
            aigov_canon_fail(cp, AIGOV_CANON_INVALID, "unterminated string");
            return -1;
        }

        if (*p == '"') {
            break;
        }

        if (*p < 0x20) {
            cp->p = p;
            aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                             "control character in a string");
            return -1;
        }

        if (*p == '\\') {
            escapes = 1;

            if (p + 1 >= cp->end) {
                cp->p = p;
                aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                 "unterminated string");
                return -1;
            }

            switch (p[1]) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n':
            case 'r': case 't':
                p += 2;
                continue;

            case 'u':
                if (cp->end - p < 6 || aigov_canon_hex4(p + 2, &c) != 0) {
                    cp->p = p;
                    aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                     "invalid \\u escape");
                    return -1;
                }

                p += 6;
                continue;

            default:
                cp->p = p;
                aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                 "invalid escape");
                return -1;
            }
        }

        if (*p < 0x80) {
            p++;
            continue;
        }

        n = aigov_canon_utf8(p, cp->end);
        if (n == 0) {
            cp->p = p;
            aigov_canon_fail(cp, AIGOV_CANON_INVALID, "invalid UTF-8");
            return -1;
        }

        p += n;
    }

    cp->p = p + 1;

    if (!escapes) {
        *s = (const char *) begin;
        *len = p - begin;
        return 0;
    }

    /* pass 2: unescape; never longer than the escaped form */

    buf = aigov_canon_alloc(cp, (p - begin) ? (size_t) (p - begin) : 1);
    if (buf == NULL) {
        aigov_canon_fail(cp, AIGOV_CANON_NOMEM, "out of memory");
        return -1;
    }

    d = buf;

    for (q = begin; q < p; ) {

        if (*q != '\\') {
            *d++ = (char) *q++;
            continue;
        }

        switch (q[1]) {
        case '"':  *d++ = '"';  q += 2; continue;
        case '\\': *d++ = '\\'; q += 2; continue;
        case '/':  *d++ = '/';  q += 2; continue;
        case 'b':  *d++ = '\b'; q += 2; continue;
        case 'f':  *d++ = '\f'; q += 2; continue;
        case 'n':  *d++ = '\n'; q += 2; continue;
        case 'r':  *d++ = '\r'; q += 2; continue;
        case 't':  *d++ = '\t'; q += 2; continue;
        default:   /* 'u', checked in pass 1 */
            break;
        }

        (void) aigov_canon_hex4(q + 2, &c);
        q += 6;

        if (c >= 0xdc00 && c <= 0xdfff) {
            cp->p = q - 6;
            aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                             "lone low surrogate escape");
            return -1;
        }

        if (c >= 0xd800 && c <= 0xdbff) {
            if (p - q < 6 || q[0] != '\\' || q[1] != 'u'
                || aigov_canon_hex4(q + 2, &lo) != 0
                || lo < 0xdc00 || lo > 0xdfff)
            {
                cp->p = q - 6;
                aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                                 "lone high surrogate escape");
                return -1;
            }

            q += 6;
            c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        }

        d = aigov_canon_put_utf8(d, c);
    }

    *s = buf;
    *len = d - buf;

    return 0;
}


static int
aigov_canon_number(aigov_canon_parser_t *cp, aigov_canon_node_t *node)
{
    int                   neg, eneg;
    char                 *digits, *out, *o;
    size_t                nint, nfrac, lead, n, i, j, room;
    long long             k, e, x;
    const unsigned char  *ip, *fp, *p;

    p = cp->p;
    neg = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }

    /* int part: "0" or [1-9][0-9]* */

    ip = p;

    if (p >= cp->end || *p < '0' || *p > '9') {
        cp->p = p;
        aigov_canon_fail(cp, AIGOV_CANON_INVALID, "invalid number");
        return -1;
    }

    if (*p == '0') {
        p++;

    } else {
        while (p < cp->end && *p >= '0' && *p <= '9') {
            p++;
        }
    }

    nint = p - ip;

    fp = p;
    nfrac = 0;

    if (p < cp->end && *p == '.') {
        fp = ++p;

        while (p < cp->end && *p >= '0' && *p <= '9') {
            p++;
        }

        nfrac = p - fp;

        if (nfrac == 0) {
            cp->p = p;
            aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                             "invalid number: no digit after '.'");
            return -1;
        }
    }

    e = 0;

    if (p < cp->end && (*p == 'e' || *p == 'E')) {
        p++;
        eneg = 0;

        if (p < cp->end && (*p == '+' || *p == '-')) {
            eneg = (*p == '-');
            p++;
        }

        if (p >= cp->end || *p < '0' || *p > '9') {
            cp->p = p;
            aigov_canon_fail(cp, AIGOV_CANON_INVALID,
                             "invalid number: no digit in the exponent");
            return -1;
        }

        while (p < cp->end && *p >= '0' && *p <= '9') {
            if (e <= 10 * AIGOV_CANON_MAX_EXP) {
                e = e * 10 + (*p - '0');
            }
            p++;
        }

        if (eneg) {
            e = -e;
        }
    }

    /* the digits d1..dn without leading and trailing zeros */

    digits = aigov_canon_alloc(cp, nint + nfrac + 1);
    if (digits == NULL) {
        aigov_canon_fail(cp, AIGOV_CANON_NOMEM, "out of memory");
        return -1;
    }

    n = 0;
    lead = 0;

    for (i = 0; i < nint + nfrac; i++) {
        char  c = (char) (i < nint ? ip[i] : fp[i - nint]);

        if (n == 0 && c == '0') {
            lead++;
            continue;
        }

        digits[n++] = c;
    }

    while (n && digits[n - 1] == '0') {
        n--;
    }

    cp->p = p;

    if (n == 0) {
        node->s = "0";
        node->len = 1;
        return 0;
    }

    /* e saturated just above the bound while parsing: no overflow here */
    k = (long long) nint - (long long) lead + e;

    if (k - 1 > AIGOV_CANON_MAX_EXP || k - 1 < -AIGOV_CANON_MAX_EXP) {
        /* bounded on the output, so that the output parses again */
        aigov_canon_fail(cp, AIGOV_CANON_RANGE,
                         "number exponent out of range");
        return -1;
    }

    room = n + 48;
    out = aigov_canon_alloc(cp, room);
    if (out == NULL) {
        aigov_canon_fail(cp, AIGOV_CANON_NOMEM, "out of memory");
        return -1;
    }

    o = out;

    if (neg) {
        *o++ = '-';
    }

    if (k >= (long long) n && k <= 21) {
        memcpy(o, digits, n);
        o += n;

        for (x = (long long) n; x < k; x++) {
            *o++ = '0';
        }

    } else if (k > 0 && k <= 21) {
        memcpy(o, digits, (size_t) k);
        o += k;
        *o++ = '.';
        memcpy(o, digits + k, n - (size_t) k);
        o += n - (size_t) k;

    } else if (k > -6 && k <= 0) {
        *o++ = '0';
        *o++ = '.';

        for (x = k; x < 0; x++) {
            *o++ = '0';
        }

        memcpy(o, digits, n);
        o += n;

    } else {
        *o++ = digits[0];

        if (n > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, n - 1);
            o += n - 1;
        }

        *o++ = 'e';
        x = k - 1;

        if (x < 0) {
            *o++ = '-';
            x = -x;

        } else {
            *o++ = '+';
        }

        /* at most 20 digits */
        {
            char  tmp[24];

            j = 0;
            do {
                tmp[j++] = (char) ('0' + x % 10);
                x /= 10;
            } while (x);

            while (j) {
                *o++ = tmp[--j];
            }
        }
    }

    node->s = out;
    node->len = o - out;

    return 0;
}


/* Output. */

static void
aigov_canon_flush(aigov_canon_out_t *out)
{
    if (out->len) {
        out->write(out->data, out->buf, out->len);
        out->len = 0;
    }
}


static inline void
aigov_canon_put(aigov_canon_out_t *out, const char *p, size_t len)
{
    size_t  n;

    if (len <= AIGOV_CANON_OUT - out->len) {
        /* the usual case: no flush; inlined for the 1-byte tokens */
        memcpy(out->buf + out->len, p, len);
        out->len += len;
        return;
    }

    while (len) {
        if (out->len == AIGOV_CANON_OUT) {
            aigov_canon_flush(out);
        }

        n = AIGOV_CANON_OUT - out->len;
        if (n > len) {
            n = len;
        }

        memcpy(out->buf + out->len, p, n);
        out->len += n;
        p += n;
        len -= n;
    }
}


static void
aigov_canon_put_string(aigov_canon_out_t *out, const char *s, size_t len)
{
    size_t               i, run;
    unsigned char        c;
    char                 esc[8];

    aigov_canon_put(out, "\"", 1);

    run = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }

        aigov_canon_put(out, s + run, i - run);
        run = i + 1;

        aigov_canon_put(out, esc, aigov_json_escape_char(c, esc));
    }

    aigov_canon_put(out, s + run, len - run);
    aigov_canon_put(out, "\"", 1);
}


static void
aigov_canon_emit(aigov_canon_out_t *out, aigov_canon_node_t *node)
{
    aigov_canon_node_t  *c;

    switch (node->type) {

    case AIGOV_CANON_NULL:
        aigov_canon_put(out, "null", 4);
        break;

    case AIGOV_CANON_TRUE:
        aigov_canon_put(out, "true", 4);
        break;

    case AIGOV_CANON_FALSE:
        aigov_canon_put(out, "false", 5);
        break;

    case AIGOV_CANON_NUMBER:
        aigov_canon_put(out, node->s, node->len);
        break;

    case AIGOV_CANON_STRING:
        aigov_canon_put_string(out, node->s, node->len);
        break;

    case AIGOV_CANON_ARRAY:
        aigov_canon_put(out, "[", 1);

        for (c = node->child; c; c = c->next) {
            aigov_canon_emit(out, c);
            if (c->next) {
                aigov_canon_put(out, ",", 1);
            }
        }

        aigov_canon_put(out, "]", 1);
        break;

    case AIGOV_CANON_OBJECT:
        aigov_canon_put(out, "{", 1);

        for (c = node->child; c; c = c->next) {
            aigov_canon_put_string(out, c->key, c->key_len);
            aigov_canon_put(out, ":", 1);
            aigov_canon_emit(out, c);
            if (c->next) {
                aigov_canon_put(out, ",", 1);
            }
        }

        aigov_canon_put(out, "}", 1);
        break;
    }
}


int
aigov_canon(const char *in, size_t len, aigov_canon_write_pt write,
    void *data, char *err, size_t err_size)
{
    aigov_canon_out_t      out;
    aigov_canon_node_t    *root;
    aigov_canon_parser_t   cp;
    union {
        char               buf[AIGOV_CANON_STACK];
        long double        align_ld;
        void              *align_p;
        long long          align_ll;
    } stack;

    memset(&cp, 0, sizeof(aigov_canon_parser_t));

    cp.start = (const unsigned char *) in;
    cp.p = cp.start;
    cp.end = cp.start + len;
    cp.pos = stack.buf;
    cp.last = stack.buf + sizeof(stack.buf);
    cp.rc = AIGOV_CANON_OK;

    if (in == NULL && len) {
        cp.end = cp.start;
    }

    aigov_canon_ws(&cp);

    root = aigov_canon_value(&cp, 1);

    if (root) {
        aigov_canon_ws(&cp);

        if (cp.p != cp.end) {
            root = aigov_canon_fail(&cp, AIGOV_CANON_INVALID,
                                    "data after the JSON value");
        }
    }

    if (root == NULL) {
        if (err && err_size) {
            snprintf(err, err_size, "invalid JSON at byte %zu: %s", cp.at,
                     cp.msg ? cp.msg : "error");
        }

        aigov_canon_free(&cp);
        return cp.rc != AIGOV_CANON_OK ? cp.rc : AIGOV_CANON_INVALID;
    }

    if (write) {
        out.write = write;
        out.data = data;
        out.len = 0;

        aigov_canon_emit(&out, root);
        aigov_canon_flush(&out);
    }

    aigov_canon_free(&cp);

    if (err && err_size) {
        err[0] = '\0';
    }

    return AIGOV_CANON_OK;
}


/* aigov_canon_dup(): the output collected in a growing malloc() buffer */

typedef struct {
    char    *buf;
    size_t   len;
    size_t   size;
    int      nomem;
} aigov_canon_dup_t;


static void
aigov_canon_dup_write(void *data, const char *p, size_t len)
{
    char               *nbuf;
    size_t              size;
    aigov_canon_dup_t  *d = data;

    if (d->nomem) {
        return;
    }

    if (d->len + len + 1 > d->size) {
        size = d->size ? d->size : 256;

        while (size < d->len + len + 1) {
            size *= 2;
        }

        nbuf = realloc(d->buf, size);
        if (nbuf == NULL) {
            d->nomem = 1;
            return;
        }

        d->buf = nbuf;
        d->size = size;
    }

    memcpy(d->buf + d->len, p, len);
    d->len += len;
}


char *
aigov_canon_dup(const char *in, size_t len, size_t *out_len, int *rc,
    char *err, size_t err_size)
{
    int                 r;
    aigov_canon_dup_t   d;

    memset(&d, 0, sizeof(aigov_canon_dup_t));

    r = aigov_canon(in, len, aigov_canon_dup_write, &d, err, err_size);

    if (r == AIGOV_CANON_OK && (d.nomem || d.buf == NULL)) {
        /* every value writes something: no buffer means no memory */
        r = AIGOV_CANON_NOMEM;
    }

    if (r != AIGOV_CANON_OK) {
        free(d.buf);

        if (rc) {
            *rc = r;
        }

        return NULL;
    }

    d.buf[d.len] = '\0';

    if (out_len) {
        *out_len = d.len;
    }

    if (rc) {
        *rc = r;
    }

    return d.buf;
}
