/*
 * ngx_aigov: rule-based fallback engine (see include/aigov_rules.h).
 * No nginx headers here: tests/ links this file on its own.
 *
 * Loading turns the JSON file into conditions with parsed paths, compiled
 * regexes and response "programs": runs of constant JSON text, serialized
 * once at load, between substitutions.  Evaluation walks the conditions
 * without allocating and renders the winner's program into one buffer,
 * escaping every substituted byte on the way, so the body is valid JSON
 * by construction and never exceeds its bound, whatever the request body.
 */

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "aigov_core.h"
#include "aigov_rules.h"


#define AIGOV_RULES_BLOCK       8192
#define AIGOV_RULES_ALIGN       16
#define AIGOV_RULES_MAX_KEY     64
#define AIGOV_RULES_RE_ATOMS    4096
#define AIGOV_RULES_RE_DUP      255
#define AIGOV_RULES_RE_NEST     32
#define AIGOV_RULES_RE_ANCHORS  32
#define AIGOV_RULES_QUOTE       80      /* bytes of a value quoted in errors */
#define AIGOV_RULES_DUMP_DEPTH  4096

/* condition operators */
#define AIGOV_RULES_ALL         1
#define AIGOV_RULES_ANY         2
#define AIGOV_RULES_NOT         3
#define AIGOV_RULES_EQ          4
#define AIGOV_RULES_NE          5
#define AIGOV_RULES_LT          6
#define AIGOV_RULES_LTE         7
#define AIGOV_RULES_GT          8
#define AIGOV_RULES_GTE         9
#define AIGOV_RULES_BETWEEN     10
#define AIGOV_RULES_IN          11
#define AIGOV_RULES_NOT_IN      12
#define AIGOV_RULES_MATCHES     13
#define AIGOV_RULES_MATCHES_I   14
#define AIGOV_RULES_EXISTS      15
#define AIGOV_RULES_LEN_GT      16
#define AIGOV_RULES_LEN_LT      17

/* operand types */
#define AIGOV_RULES_V_STRING    1
#define AIGOV_RULES_V_NUMBER    2
#define AIGOV_RULES_V_BOOL      3
#define AIGOV_RULES_V_NULL      4

/* template program steps */
#define AIGOV_RULES_OP_TEXT     1   /* constant bytes, written as they are */
#define AIGOV_RULES_OP_STR      2   /* a value inside a JSON string */
#define AIGOV_RULES_OP_JSON     3   /* a value as a JSON value (typed) */
#define AIGOV_RULES_OP_HEADER   4   /* a value inside a header value */

/* output filters */
#define AIGOV_RULES_RAW         0
#define AIGOV_RULES_ESCAPE      1
#define AIGOV_RULES_HEADER      2

/* buffer failures */
#define AIGOV_RULES_NOMEM       1
#define AIGOV_RULES_LIMIT       2


typedef struct aigov_rules_block_s  aigov_rules_block_t;
typedef struct aigov_rules_cond_s   aigov_rules_cond_t;


struct aigov_rules_block_s {
    aigov_rules_block_t  *next;
    size_t                size;
    size_t                used;
};


typedef struct {
    char    *data;
    size_t   len;
    size_t   cap;
    size_t   limit;
    int      failed;
} aigov_rules_buf_t;


typedef struct {
    long long  i;
    double     d;
    int        is_int;
} aigov_rules_num_t;


typedef struct {
    int                 type;
    const char         *str;
    size_t              len;
    aigov_rules_num_t   num;
    int                 boolean;
} aigov_rules_scalar_t;


typedef struct {
    const char  *key;           /* NULL: an array index */
    long         index;
} aigov_rules_step_t;


typedef struct {
    const char          *text;  /* as written */
    const char          *attr;  /* "@name": the name, else NULL */
    size_t               attr_len;
    aigov_rules_step_t  *steps;
    size_t               nsteps;
} aigov_rules_path_t;


struct aigov_rules_cond_s {
    int                    op;
    aigov_rules_path_t     path;
    aigov_rules_cond_t    *kids;        /* all, any: nkids; not: one */
    size_t                 nkids;
    aigov_rules_scalar_t  *set;         /* eq, ne: one; in, not_in */
    size_t                 nset;
    aigov_rules_num_t      lo;          /* lt ... gte, between */
    aigov_rules_num_t      hi;          /* between */
    regex_t               *re;
    size_t                 len;         /* len_gt, len_lt */
    int                    exists;
};


typedef struct {
    int                        op;
    const char                *text;
    size_t                     len;
    const aigov_rules_path_t  *path;
} aigov_rules_op_t;


typedef struct {
    aigov_rules_op_t  *ops;
    size_t             nops;
    size_t             size;    /* constant bytes: a first guess */
} aigov_rules_tpl_t;


typedef struct {
    const char         *name;
    size_t              name_len;
    aigov_rules_tpl_t   value;
} aigov_rules_hdr_t;


typedef struct {
    const char          *name;
    size_t               index;
    int                  status;
    aigov_rules_hdr_t   *headers;
    size_t               nheaders;
    aigov_rules_tpl_t    body;
    int                  has_body;
} aigov_rules_action_t;


typedef struct {
    aigov_rules_cond_t     when;
    aigov_rules_action_t   act;
} aigov_rules_rule_t;


struct aigov_rules_s {
    aigov_rules_block_t   *blocks;
    regex_t              **regexes;
    size_t                 nregexes;
    size_t                 cap_regexes;
    const char           **attrs;
    size_t                 nattrs;
    size_t                 cap_attrs;
    aigov_rules_rule_t    *rules;
    size_t                 nrules;
    aigov_rules_action_t   dflt;
    int                    has_default;
    int                    uses_body;
};


typedef struct {
    aigov_rules_t       *rules;
    char                *err;
    size_t               errlen;
    char                 label[AIGOV_RULES_MAX_NAME + 32];
    char                 loc[256];
    size_t               loc_len;
    size_t               nconds;
    size_t               nsubst;
    aigov_rules_buf_t    text;
    aigov_rules_op_t    *ops;
    size_t               nops;
    size_t               cap_ops;
} aigov_rules_ctx_t;


typedef struct {
    const json_t              *body;
    const aigov_rules_attr_t  *attrs;
    size_t                     nattrs;
} aigov_rules_env_t;


typedef struct {
    const json_t  *json;        /* a body value, or NULL: an attribute */
    const char    *str;
    size_t         len;
} aigov_rules_val_t;


static const struct {
    const char  *name;
    int          op;
} aigov_rules_ops[] = {
    { "eq",        AIGOV_RULES_EQ },
    { "ne",        AIGOV_RULES_NE },
    { "lt",        AIGOV_RULES_LT },
    { "lte",       AIGOV_RULES_LTE },
    { "gt",        AIGOV_RULES_GT },
    { "gte",       AIGOV_RULES_GTE },
    { "between",   AIGOV_RULES_BETWEEN },
    { "in",        AIGOV_RULES_IN },
    { "not_in",    AIGOV_RULES_NOT_IN },
    { "matches",   AIGOV_RULES_MATCHES },
    { "matches_i", AIGOV_RULES_MATCHES_I },
    { "exists",    AIGOV_RULES_EXISTS },
    { "len_gt",    AIGOV_RULES_LEN_GT },
    { "len_lt",    AIGOV_RULES_LEN_LT },
    { NULL, 0 }
};


/* Headers nginx computes itself: a rule setting them would break framing. */
static const char  *aigov_rules_hop_headers[] = {
    "content-length", "transfer-encoding", "connection", "keep-alive",
    "proxy-connection", "upgrade", "te", "trailer", NULL
};


static const char  aigov_rules_replacement[] = "\xef\xbf\xbd";  /* U+FFFD */


/* the compiler checks the messages' arguments */
#if defined(__GNUC__) || defined(__clang__)
#define AIGOV_RULES_PRINTF(f, a)  __attribute__((format(printf, f, a)))
#else
#define AIGOV_RULES_PRINTF(f, a)
#endif

static int aigov_rules_fail(aigov_rules_ctx_t *ctx, const char *fmt, ...)
    AIGOV_RULES_PRINTF(2, 3);
static size_t aigov_rules_loc_push(aigov_rules_ctx_t *ctx, const char *fmt,
    ...) AIGOV_RULES_PRINTF(2, 3);
static int aigov_rules_bad_path(aigov_rules_ctx_t *ctx, const char *s,
    size_t len, const char *fmt, ...) AIGOV_RULES_PRINTF(4, 5);
static int aigov_rules_cond(aigov_rules_ctx_t *ctx, const json_t *j,
    aigov_rules_cond_t *c, int depth);
static int aigov_rules_tpl_value(aigov_rules_ctx_t *ctx, const json_t *v,
    int depth);
static int aigov_rules_test(const aigov_rules_cond_t *c,
    const aigov_rules_env_t *env);


/* ------------------------------------------------------------------------ */
/* memory                                                                    */
/* ------------------------------------------------------------------------ */

static void *
aigov_rules_alloc(aigov_rules_t *rules, size_t size)
{
    aigov_rules_block_t  *b;
    size_t                hdr, n;
    char                 *p;

    hdr = (sizeof(aigov_rules_block_t) + AIGOV_RULES_ALIGN - 1)
          & ~((size_t) AIGOV_RULES_ALIGN - 1);

    if (size > ((size_t) -1) / 2) {
        return NULL;
    }

    size = (size + AIGOV_RULES_ALIGN - 1) & ~((size_t) AIGOV_RULES_ALIGN - 1);

    b = rules->blocks;

    if (b == NULL || b->size - b->used < size) {

        /* large requests get a block of their own, behind the current one,
         * so that the space left in the current block is not wasted */
        n = (size > AIGOV_RULES_BLOCK / 4) ? size : AIGOV_RULES_BLOCK;

        b = malloc(hdr + n);
        if (b == NULL) {
            return NULL;
        }

        b->size = n;
        b->used = 0;

        if (n == size && rules->blocks != NULL) {
            b->next = rules->blocks->next;
            rules->blocks->next = b;

        } else {
            b->next = rules->blocks;
            rules->blocks = b;
        }
    }

    p = (char *) b + hdr + b->used;
    b->used += size;

    memset(p, 0, size);

    return p;
}


static char *
aigov_rules_strdup(aigov_rules_t *rules, const char *s, size_t len)
{
    char  *p;

    p = aigov_rules_alloc(rules, len + 1);
    if (p == NULL) {
        return NULL;
    }

    if (len) {
        memcpy(p, s, len);
    }

    p[len] = '\0';

    return p;
}


/* ------------------------------------------------------------------------ */
/* bounded buffers                                                           */
/* ------------------------------------------------------------------------ */

static int
aigov_rules_reserve(aigov_rules_buf_t *b, size_t n)
{
    size_t   cap;
    char    *p;

    if (b->failed) {
        return AIGOV_RULES_ERROR;
    }

    if (n > b->limit || b->len > b->limit - n) {
        b->failed = AIGOV_RULES_LIMIT;
        return AIGOV_RULES_ERROR;
    }

    /* one more byte for the NUL the results carry */
    if (b->len + n + 1 <= b->cap) {
        return AIGOV_RULES_OK;
    }

    cap = b->cap ? b->cap : 256;

    while (cap < b->len + n + 1) {
        cap *= 2;
    }

    if (cap > b->limit + 1) {
        cap = b->limit + 1;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = AIGOV_RULES_NOMEM;
        return AIGOV_RULES_ERROR;
    }

    b->data = p;
    b->cap = cap;

    return AIGOV_RULES_OK;
}


static int
aigov_rules_put(aigov_rules_buf_t *b, const void *p, size_t n)
{
    if (n == 0) {
        return b->failed ? AIGOV_RULES_ERROR : AIGOV_RULES_OK;
    }

    if (aigov_rules_reserve(b, n) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';

    return AIGOV_RULES_OK;
}


static int
aigov_rules_puts(aigov_rules_buf_t *b, const char *s)
{
    return aigov_rules_put(b, s, strlen(s));
}


static void
aigov_rules_buf_free(aigov_rules_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


/*
 * Length of the valid UTF-8 sequence at p, or 0: no overlong forms, no
 * surrogates, nothing above U+10FFFF (RFC 3629).
 */
static size_t
aigov_rules_utf8(const unsigned char *p, size_t n)
{
    unsigned char  c;

    c = p[0];

    if (c < 0x80) {
        return 1;
    }

    if (c < 0xc2 || c > 0xf4) {
        return 0;
    }

    if (c < 0xe0) {
        return (n >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
    }

    if (c < 0xf0) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
            || (c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
        {
            return 0;
        }

        return 3;
    }

    if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80
        || (p[3] & 0xc0) != 0x80
        || (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
    {
        return 0;
    }

    return 4;
}


/*
 * Writes bytes through a filter: RAW as they are, ESCAPE as the inside of
 * a JSON string (invalid UTF-8 becomes U+FFFD), HEADER without control
 * characters other than tab.  Runs of plain bytes are copied at once.
 */
static int
aigov_rules_filter(aigov_rules_buf_t *b, int filter, const char *s,
    size_t len)
{
    const unsigned char  *p, *end, *run;
    unsigned char         c;
    char                  esc[6];
    size_t                n;

    if (filter == AIGOV_RULES_RAW) {
        return aigov_rules_put(b, s, len);
    }

    p = (const unsigned char *) s;
    end = p + len;
    run = p;

    while (p < end) {
        c = *p;

        if (filter == AIGOV_RULES_HEADER) {
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                aigov_rules_put(b, run, (size_t) (p - run));
                run = ++p;
                continue;
            }

            p++;
            continue;
        }

        if (c >= 0x80) {
            n = aigov_rules_utf8(p, (size_t) (end - p));

            if (n) {
                p += n;
                continue;
            }

            aigov_rules_put(b, run, (size_t) (p - run));
            aigov_rules_put(b, aigov_rules_replacement, 3);
            run = ++p;
            continue;
        }

        if (c >= 0x20 && c != '"' && c != '\\') {
            p++;
            continue;
        }

        aigov_rules_put(b, run, (size_t) (p - run));
        aigov_rules_put(b, esc, aigov_json_escape_char(c, esc));
        run = ++p;
    }

    return aigov_rules_put(b, run, (size_t) (p - run));
}


static int
aigov_rules_put_qstring(aigov_rules_buf_t *b, const char *s, size_t len)
{
    aigov_rules_put(b, "\"", 1);
    aigov_rules_filter(b, AIGOV_RULES_ESCAPE, s, len);

    return aigov_rules_put(b, "\"", 1);
}


/*
 * Shortest of %.15g .. %.17g that reads back as the same double, so 0.1
 * stays "0.1"; a ".0" keeps a real a real for the next reader.
 */
static int
aigov_rules_put_real(aigov_rules_buf_t *b, double d)
{
    char  s[48], *p;
    int   prec;

    if (!isfinite(d)) {
        return aigov_rules_put(b, "null", 4);
    }

    for (prec = 15; prec < 17; prec++) {
        snprintf(s, sizeof(s) - 2, "%.*g", prec, d);

        if (strtod(s, NULL) == d) {
            break;
        }
    }

    if (prec == 17) {
        snprintf(s, sizeof(s) - 2, "%.17g", d);
    }

    /* a locale's decimal comma, should anything have set one */
    for (p = s; *p; p++) {
        if (*p == ',') {
            *p = '.';
        }
    }

    if (strpbrk(s, ".eE") == NULL) {
        strcat(s, ".0");
    }

    return aigov_rules_puts(b, s);
}


/* Compact JSON of a jansson value, bounded by the buffer's limit. */
static int
aigov_rules_dump(aigov_rules_buf_t *b, const json_t *v, int depth)
{
    const char  *key;
    json_t      *val, *obj;
    size_t       i, n, klen;
    char         num[32];

    if (b->failed) {
        return AIGOV_RULES_ERROR;
    }

    if (depth > AIGOV_RULES_DUMP_DEPTH) {
        b->failed = AIGOV_RULES_LIMIT;
        return AIGOV_RULES_ERROR;
    }

    switch (json_typeof(v)) {

    case JSON_OBJECT:
        obj = (json_t *) v;
        n = 0;

        aigov_rules_put(b, "{", 1);

        json_object_keylen_foreach(obj, key, klen, val) {
            if (n++) {
                aigov_rules_put(b, ",", 1);
            }

            aigov_rules_put_qstring(b, key, klen);
            aigov_rules_put(b, ":", 1);

            if (aigov_rules_dump(b, val, depth + 1) != AIGOV_RULES_OK) {
                return AIGOV_RULES_ERROR;
            }
        }

        return aigov_rules_put(b, "}", 1);

    case JSON_ARRAY:
        aigov_rules_put(b, "[", 1);

        n = json_array_size(v);

        for (i = 0; i < n; i++) {
            if (i) {
                aigov_rules_put(b, ",", 1);
            }

            if (aigov_rules_dump(b, json_array_get(v, i), depth + 1)
                != AIGOV_RULES_OK)
            {
                return AIGOV_RULES_ERROR;
            }
        }

        return aigov_rules_put(b, "]", 1);

    case JSON_STRING:
        return aigov_rules_put_qstring(b, json_string_value(v),
                                       json_string_length(v));

    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
                 json_integer_value(v));
        return aigov_rules_puts(b, num);

    case JSON_REAL:
        return aigov_rules_put_real(b, json_real_value(v));

    case JSON_TRUE:
        return aigov_rules_put(b, "true", 4);

    case JSON_FALSE:
        return aigov_rules_put(b, "false", 5);

    default:
        return aigov_rules_put(b, "null", 4);
    }
}


/* ------------------------------------------------------------------------ */
/* load: errors                                                              */
/* ------------------------------------------------------------------------ */

/* A value from the file, quoted for a message: short, printable. */
static const char *
aigov_rules_quote(char *dst, size_t size, const char *s, size_t len)
{
    size_t          i, n, max;
    unsigned char   c;

    max = AIGOV_RULES_QUOTE;
    n = 0;
    dst[n++] = '"';

    for (i = 0; i < len && i < max && n + 8 < size; i++) {
        c = (unsigned char) s[i];

        if (c < 0x20 || c == 0x7f) {
            n += (size_t) snprintf(dst + n, size - n, "\\x%02x", c);

        } else if (c == '"' || c == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char) c;

        } else {
            dst[n++] = (char) c;
        }
    }

    if (i < len) {
        /* do not end inside a UTF-8 sequence */
        while (n > 1 && ((unsigned char) dst[n - 1] & 0xc0) == 0x80) {
            n--;
        }

        if (n > 1 && (unsigned char) dst[n - 1] >= 0xc0) {
            n--;
        }

        memcpy(dst + n, "...", 3);
        n += 3;
    }

    dst[n++] = '"';
    dst[n] = '\0';

    return dst;
}


static int
aigov_rules_fail(aigov_rules_ctx_t *ctx, const char *fmt, ...)
{
    va_list  args;
    char     msg[512];

    if (ctx->err == NULL || ctx->errlen == 0) {
        return AIGOV_RULES_ERROR;
    }

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    if (ctx->label[0] && ctx->loc_len) {
        snprintf(ctx->err, ctx->errlen, "%s: %s: %s", ctx->label, ctx->loc,
                 msg);

    } else if (ctx->label[0]) {
        snprintf(ctx->err, ctx->errlen, "%s: %s", ctx->label, msg);

    } else {
        snprintf(ctx->err, ctx->errlen, "%s", msg);
    }

    return AIGOV_RULES_ERROR;
}


static int
aigov_rules_nomem(aigov_rules_ctx_t *ctx)
{
    return aigov_rules_fail(ctx, "out of memory");
}


/* Appends to the location ("when.all[1]"); returns the length to restore. */
static size_t
aigov_rules_loc_push(aigov_rules_ctx_t *ctx, const char *fmt, ...)
{
    va_list  args;
    size_t   old, i;
    int      n;

    old = ctx->loc_len;

    if (old + 1 >= sizeof(ctx->loc)) {
        return old;
    }

    va_start(args, fmt);
    n = vsnprintf(ctx->loc + old, sizeof(ctx->loc) - old, fmt, args);
    va_end(args);

    if (n < 0) {
        ctx->loc[old] = '\0';
        return old;
    }

    ctx->loc_len = old + (size_t) n;

    if (ctx->loc_len >= sizeof(ctx->loc)) {
        ctx->loc_len = sizeof(ctx->loc) - 1;
    }

    /* keys are the file's: keep the message on one printable line */
    for (i = old; i < ctx->loc_len; i++) {
        if ((unsigned char) ctx->loc[i] < 0x20 || ctx->loc[i] == 0x7f) {
            ctx->loc[i] = '?';
        }
    }

    return old;
}


static void
aigov_rules_loc_pop(aigov_rules_ctx_t *ctx, size_t old)
{
    ctx->loc_len = old;
    ctx->loc[old] = '\0';
}


static const char *
aigov_rules_type_name(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:  return "an object";
    case JSON_ARRAY:   return "an array";
    case JSON_STRING:  return "a string";
    case JSON_INTEGER:
    case JSON_REAL:    return "a number";
    case JSON_TRUE:
    case JSON_FALSE:   return "a boolean";
    default:           return "null";
    }
}


static int
aigov_rules_key_is(const char *key, size_t klen, const char *name)
{
    return klen == strlen(name) && memcmp(key, name, klen) == 0;
}


/* ------------------------------------------------------------------------ */
/* load: paths                                                               */
/* ------------------------------------------------------------------------ */

static int
aigov_rules_add_attr(aigov_rules_ctx_t *ctx, const char *name, size_t len)
{
    aigov_rules_t   *rules;
    const char     **p;
    size_t           i;

    rules = ctx->rules;

    for (i = 0; i < rules->nattrs; i++) {
        if (strlen(rules->attrs[i]) == len
            && memcmp(rules->attrs[i], name, len) == 0)
        {
            return AIGOV_RULES_OK;
        }
    }

    if (rules->nattrs == rules->cap_attrs) {
        p = realloc(rules->attrs, (rules->cap_attrs * 2 + 8) * sizeof(*p));
        if (p == NULL) {
            return aigov_rules_nomem(ctx);
        }

        rules->attrs = p;
        rules->cap_attrs = rules->cap_attrs * 2 + 8;
    }

    rules->attrs[rules->nattrs++] = name;

    return AIGOV_RULES_OK;
}


static int
aigov_rules_key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-';
}


static int
aigov_rules_attr_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
           || c == '_' || c == '-' || c == '.';
}


static int
aigov_rules_bad_path(aigov_rules_ctx_t *ctx, const char *s, size_t len,
    const char *fmt, ...)
{
    va_list  args;
    char     msg[256], q[AIGOV_RULES_QUOTE * 4 + 8];

    va_start(args, fmt);
    vsnprintf(msg, sizeof(msg), fmt, args);
    va_end(args);

    return aigov_rules_fail(ctx, "bad path %s: %s",
                            aigov_rules_quote(q, sizeof(q), s, len), msg);
}


static int
aigov_rules_path(aigov_rules_ctx_t *ctx, const char *s, size_t len,
    aigov_rules_path_t *path)
{
    aigov_rules_step_t   steps[AIGOV_RULES_MAX_STEPS];
    const char          *start;
    size_t               i, n, k;
    long                 index;
    int                  neg;

    memset(path, 0, sizeof(*path));

    if (len == 0 || (s[0] != '$' && s[0] != '@')) {
        return aigov_rules_bad_path(ctx, s, len, "must start with \"$\" "
                                    "(the body) or \"@\" (an attribute)");
    }

    if (len > AIGOV_RULES_MAX_PATH) {
        return aigov_rules_bad_path(ctx, s, len, "longer than %d bytes",
                                    AIGOV_RULES_MAX_PATH);
    }

    if (memchr(s, '\0', len) != NULL) {
        return aigov_rules_bad_path(ctx, s, len, "contains a NUL byte");
    }

    path->text = aigov_rules_strdup(ctx->rules, s, len);
    if (path->text == NULL) {
        return aigov_rules_nomem(ctx);
    }

    if (s[0] == '@') {
        if (len == 1) {
            return aigov_rules_bad_path(ctx, s, len, "expected an attribute "
                                        "name after \"@\"");
        }

        if (len - 1 > AIGOV_RULES_MAX_NAME) {
            return aigov_rules_bad_path(ctx, s, len, "attribute name longer "
                                        "than %d bytes", AIGOV_RULES_MAX_NAME);
        }

        for (i = 1; i < len; i++) {
            if (s[i] >= 'A' && s[i] <= 'Z') {
                return aigov_rules_bad_path(ctx, s, len, "attribute names "
                                            "are lowercase (offset %zu)", i);
            }

            if (!aigov_rules_attr_char(s[i])) {
                return aigov_rules_bad_path(ctx, s, len, "unexpected "
                                            "character at offset %zu "
                                            "(attribute names are "
                                            "a-z 0-9 . _ -)", i);
            }
        }

        path->attr = path->text + 1;
        path->attr_len = len - 1;

        return aigov_rules_add_attr(ctx, path->attr, path->attr_len);
    }

    ctx->rules->uses_body = 1;

    n = 0;
    i = 1;

    while (i < len) {

        if (n == AIGOV_RULES_MAX_STEPS) {
            return aigov_rules_bad_path(ctx, s, len, "more than %d steps",
                                        AIGOV_RULES_MAX_STEPS);
        }

        if (s[i] == '.') {
            start = s + ++i;

            while (i < len && aigov_rules_key_char(s[i])) {
                i++;
            }

            k = (size_t) (s + i - start);

            if (k == 0) {
                return aigov_rules_bad_path(ctx, s, len, "expected a key "
                                            "(A-Z a-z 0-9 _ -) at offset "
                                            "%zu", i);
            }

            if (k > AIGOV_RULES_MAX_KEY) {
                return aigov_rules_bad_path(ctx, s, len, "key longer than "
                                            "%d bytes at offset %zu",
                                            AIGOV_RULES_MAX_KEY,
                                            (size_t) (start - s));
            }

            steps[n].key = aigov_rules_strdup(ctx->rules, start, k);
            if (steps[n].key == NULL) {
                return aigov_rules_nomem(ctx);
            }

            steps[n].index = 0;
            n++;
            continue;
        }

        if (s[i] != '[') {
            return aigov_rules_bad_path(ctx, s, len, "expected \".\" or "
                                        "\"[\" at offset %zu", i);
        }

        start = s + i++;
        neg = 0;

        if (i < len && s[i] == '-') {
            neg = 1;
            i++;
        }

        index = 0;
        k = 0;

        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (++k > 9) {
                return aigov_rules_bad_path(ctx, s, len, "array index of "
                                            "more than 9 digits at offset "
                                            "%zu", (size_t) (start - s));
            }

            index = index * 10 + (s[i++] - '0');
        }

        if (k == 0 || (k > 1 && start[neg + 1] == '0')
            || (neg && index == 0))
        {
            return aigov_rules_bad_path(ctx, s, len, "bad array index at "
                                        "offset %zu (0, 1, ... or -1, "
                                        "-2, ...)", (size_t) (start - s));
        }

        if (i >= len || s[i] != ']') {
            return aigov_rules_bad_path(ctx, s, len, "expected \"]\" at "
                                        "offset %zu", i);
        }

        i++;

        steps[n].key = NULL;
        steps[n].index = neg ? -index : index;
        n++;
    }

    if (n) {
        path->steps = aigov_rules_alloc(ctx->rules, n * sizeof(steps[0]));
        if (path->steps == NULL) {
            return aigov_rules_nomem(ctx);
        }

        memcpy(path->steps, steps, n * sizeof(steps[0]));
    }

    path->nsteps = n;

    return AIGOV_RULES_OK;
}


/* ------------------------------------------------------------------------ */
/* load: operands                                                            */
/* ------------------------------------------------------------------------ */

static void
aigov_rules_json_num(const json_t *j, aigov_rules_num_t *num)
{
    if (json_is_integer(j)) {
        num->is_int = 1;
        num->i = (long long) json_integer_value(j);
        num->d = (double) num->i;

    } else {
        num->is_int = 0;
        num->i = 0;
        num->d = json_real_value(j);
    }
}


static int
aigov_rules_scalar(aigov_rules_ctx_t *ctx, const json_t *j,
    aigov_rules_scalar_t *sc)
{
    switch (json_typeof(j)) {

    case JSON_STRING:
        sc->type = AIGOV_RULES_V_STRING;
        sc->len = json_string_length(j);
        sc->str = aigov_rules_strdup(ctx->rules, json_string_value(j),
                                     sc->len);
        if (sc->str == NULL) {
            return aigov_rules_nomem(ctx);
        }
        return AIGOV_RULES_OK;

    case JSON_INTEGER:
    case JSON_REAL:
        sc->type = AIGOV_RULES_V_NUMBER;
        aigov_rules_json_num(j, &sc->num);
        return AIGOV_RULES_OK;

    case JSON_TRUE:
    case JSON_FALSE:
        sc->type = AIGOV_RULES_V_BOOL;
        sc->boolean = json_is_true(j);
        return AIGOV_RULES_OK;

    case JSON_NULL:
        sc->type = AIGOV_RULES_V_NULL;
        return AIGOV_RULES_OK;

    default:
        return AIGOV_RULES_DECLINED;
    }
}


/* The index of the ']' closing the bracket expression opened at p[i]. */
static size_t
aigov_rules_re_bracket(const char *p, size_t n, size_t i)
{
    size_t  j;
    char    t;

    j = i + 1;

    if (j < n && p[j] == '^') {
        j++;
    }

    /* a ']' first is a member, not the end */
    if (j < n && p[j] == ']') {
        j++;
    }

    while (j < n && p[j] != ']') {
        if (p[j] == '[' && j + 1 < n
            && (p[j + 1] == ':' || p[j + 1] == '=' || p[j + 1] == '.'))
        {
            /* [:alpha:], [=a=], [.-.] may hold a ']' */
            t = p[j + 1];
            j += 2;

            while (j + 1 < n && !(p[j] == t && p[j + 1] == ']')) {
                j++;
            }

            j += 2;
            continue;
        }

        j++;
    }

    return (j < n) ? j : n;
}


/* The index of the ')' closing the group opened at p[i], or n. */
static size_t
aigov_rules_re_group(const char *p, size_t n, size_t i)
{
    size_t  depth;

    depth = 0;

    for ( /* void */ ; i < n; i++) {
        switch (p[i]) {
        case '\\':
            i++;
            break;
        case '[':
            i = aigov_rules_re_bracket(p, n, i);
            break;
        case '(':
            depth++;
            break;
        case ')':
            if (--depth == 0) {
                return i;
            }
            break;
        }
    }

    return n;
}


/* A group of a regex being checked: see aigov_rules_regex_check(). */
typedef struct {
    size_t  atoms;      /* what glibc compiles for it, so far */
    int     nullable;   /* a finished alternative can match nothing */
    int     alt;        /* the current alternative can, so far */
    int     before;     /* the current alternative could before its last
                           item */
} aigov_rules_re_group_t;


/*
 * Refuses, before regcomp() sees them, the patterns that make glibc's
 * regcomp() take seconds or gigabytes, and what POSIX does not have but
 * users write from PCRE habit:
 *
 *   - expansion: counted repetitions copy their item ("a{3}" is "aaa",
 *     "a+" is "aa*"), nested ones multiply: at most 4096 atoms;
 *   - a repetition of something that can match nothing ("(a*)*",
 *     "(a?b?)?") and stacked repetitions ("a**", PCRE's lazy "a*?"):
 *     epsilon loops that glibc's closure computation multiplies, once the
 *     pattern is anchored (aigov_rules_re_anchor());
 *   - more than 32 anchors: their constraints are copied as well;
 *   - backreferences (exponential matching), "(?" groups and flags, an
 *     unmatched ")".
 */
static int
aigov_rules_regex_check(aigov_rules_ctx_t *ctx, const char *opname,
    const char *p, size_t n)
{
    aigov_rules_re_group_t   g[AIGOV_RULES_RE_NEST + 1];
    size_t                   i, j, lo, hi, k, last, anchors, cost;
    int                      depth, digits, comma, nullable, last_null;
    int                      have_last, repeated;

    memset(&g[0], 0, sizeof(g[0]));
    g[0].alt = 1;
    g[0].before = 1;

    depth = 0;
    last = 0;
    last_null = 0;
    have_last = 0;
    repeated = 0;
    anchors = 0;

    for (i = 0; i < n; i++) {

        /* by default p[i] is an item of one atom that matches something */
        cost = 1;
        nullable = 0;

        switch (p[i]) {

        case '\\':
            if (i + 1 < n && p[i + 1] >= '1' && p[i + 1] <= '9') {
                return aigov_rules_fail(ctx, "\"%s\": backreferences (\\%c) "
                                        "are not supported", opname,
                                        p[i + 1]);
            }

            i++;
            break;

        case '[':
            i = aigov_rules_re_bracket(p, n, i);
            break;

        case '^':
        case '$':
            if (++anchors > AIGOV_RULES_RE_ANCHORS) {
                return aigov_rules_fail(ctx, "\"%s\": more than %d anchors "
                                        "(^ and $)", opname,
                                        AIGOV_RULES_RE_ANCHORS);
            }

            nullable = 1;
            break;

        case '(':
            if (i + 1 < n && p[i + 1] == '?') {
                return aigov_rules_fail(ctx, "\"%s\": \"(?\" (inline flags "
                                        "such as \"(?i)\", PCRE groups) is "
                                        "not POSIX extended regex; use "
                                        "\"matches_i\" for case-insensitive "
                                        "matching", opname);
            }

            if (depth == AIGOV_RULES_RE_NEST) {
                return aigov_rules_fail(ctx, "\"%s\": parentheses nested "
                                        "deeper than %d", opname,
                                        AIGOV_RULES_RE_NEST);
            }

            depth++;
            memset(&g[depth], 0, sizeof(g[depth]));
            g[depth].alt = 1;
            g[depth].before = 1;

            have_last = 0;
            repeated = 0;
            continue;

        case ')':
            if (depth == 0) {
                /* POSIX leaves it undefined; it would also close the
                 * group aigov_rules_re_anchor() wraps the pattern in */
                return aigov_rules_fail(ctx, "\"%s\": unmatched \")\" at "
                                        "offset %zu", opname, i);
            }

            cost = g[depth].atoms + 1;
            nullable = g[depth].nullable || g[depth].alt;
            depth--;
            break;

        case '|':
            g[depth].nullable |= g[depth].alt;
            g[depth].alt = 1;
            g[depth].before = 1;

            have_last = 0;
            repeated = 0;
            continue;

        case '*':
        case '+':
        case '?':
        case '{':
            lo = (p[i] == '+') ? 1 : 0;
            hi = (p[i] == '?') ? 1 : lo + 1;    /* "*", "+": a star more */
            j = i;

            if (p[i] == '{') {
                j = i + 1;
                lo = 0;
                hi = 0;
                digits = 0;
                comma = 0;

                while (j < n && p[j] >= '0' && p[j] <= '9' && digits < 6) {
                    lo = lo * 10 + (size_t) (p[j++] - '0');
                    digits++;
                }

                hi = lo;

                if (j < n && p[j] == ',') {
                    j++;
                    comma = 1;
                    hi = 0;

                    while (j < n && p[j] >= '0' && p[j] <= '9' && digits < 12)
                    {
                        hi = hi * 10 + (size_t) (p[j++] - '0');
                        digits++;
                    }

                    if (j > 0 && p[j - 1] == ',') {
                        hi = lo + 1;            /* "{n,}": a star more */
                    }
                }

                if ((digits == 0 && !comma) || j >= n || p[j] != '}') {
                    /* not a bound: an ordinary item, regcomp has the last
                     * word */
                    break;
                }

                if (lo > AIGOV_RULES_RE_DUP || hi > AIGOV_RULES_RE_DUP + 1) {
                    return aigov_rules_fail(ctx, "\"%s\": counted repetition "
                                            "over %d", opname,
                                            AIGOV_RULES_RE_DUP);
                }
            }

            if (!have_last) {
                /* nothing to repeat: regcomp has the last word */
                i = j;
                break;
            }

            if (repeated) {
                return aigov_rules_fail(ctx, "\"%s\": two repetitions in a "
                                        "row at offset %zu (POSIX has no lazy "
                                        "\"*?\" or possessive \"*+\")",
                                        opname, i);
            }

            if (last_null) {
                return aigov_rules_fail(ctx, "\"%s\": the repetition at "
                                        "offset %zu repeats what can match "
                                        "the empty string, as in \"(a*)*\"",
                                        opname, i);
            }

            k = (hi > lo) ? hi : lo;

            if (k > 1) {
                g[depth].atoms += last * (k - 1);
                last *= k;
            }

            last_null = (lo == 0);
            g[depth].alt = g[depth].before && last_null;
            repeated = 1;
            i = j;

            goto check;

        default:
            break;
        }

        /* an item */
        g[depth].before = g[depth].alt;
        g[depth].alt = g[depth].alt && nullable;
        g[depth].atoms += cost;

        last = cost;
        last_null = nullable;
        have_last = 1;
        repeated = 0;

check:

        if (g[depth].atoms > AIGOV_RULES_RE_ATOMS
            || last > AIGOV_RULES_RE_ATOMS)
        {
            return aigov_rules_fail(ctx, "\"%s\": regex too complex (its "
                                    "repetitions expand to more than %d "
                                    "atoms)", opname, AIGOV_RULES_RE_ATOMS);
        }
    }

    return AIGOV_RULES_OK;
}


/*
 * glibc retries an unanchored search at every offset: "[a-z]+@[a-z]+"
 * takes 6 s on 64 KiB of "a".  So the pattern is matched anchored, each
 * top-level alternative A as "(.|[^.])*(A)" (the prefix eats any bytes,
 * NUL included, which "." alone does not) or, when it starts with "^",
 * as A without it: "^(...|...)" finds the same strings, and its automaton
 * covers every offset in one linear pass (0.2 ms).  A leading "^" is kept
 * out of the prefix because glibc's automaton matches a "^" that follows
 * a newline it consumed, REG_NEWLINE or not.
 */
static char *
aigov_rules_re_anchor(const char *p, size_t n)
{
    static const char   prefix[] = "(.|[^.])*(";
    size_t              i, start, len;
    char               *w;

    /* "^(" ")" NUL, and at most n + 1 alternatives ("||"), each with a
     * prefix, a ")" and a "|" */
    w = malloc(2 + n + (n + 1) * (sizeof(prefix) + 1) + 2);
    if (w == NULL) {
        return NULL;
    }

    memcpy(w, "^(", 2);
    len = 2;
    start = 0;
    i = 0;

    for ( ;; ) {

        if (i < n && p[i] != '|') {
            switch (p[i]) {
            case '\\':
                i += 2;
                break;
            case '[':
                i = aigov_rules_re_bracket(p, n, i) + 1;
                break;
            case '(':
                /* aigov_rules_regex_check() saw the groups balanced */
                i = aigov_rules_re_group(p, n, i) + 1;
                break;
            default:
                i++;
            }

            continue;
        }

        if (i > n) {
            i = n;
        }

        /* a top-level alternative: p[start .. i) */
        if (start > 0) {
            w[len++] = '|';
        }

        if (i > start && p[start] == '^') {
            memcpy(w + len, p + start + 1, i - start - 1);
            len += i - start - 1;

        } else {
            memcpy(w + len, prefix, sizeof(prefix) - 1);
            len += sizeof(prefix) - 1;
            memcpy(w + len, p + start, i - start);
            len += i - start;
            w[len++] = ')';
        }

        if (i >= n) {
            break;
        }

        start = ++i;
    }

    w[len++] = ')';
    w[len] = '\0';

    return w;
}


static int
aigov_rules_regex(aigov_rules_ctx_t *ctx, const char *opname,
    const json_t *j, int icase, aigov_rules_cond_t *c)
{
    aigov_rules_t   *rules;
    regex_t         *re, **list;
    const char      *p;
    size_t           n;
    int              rc, flags;
    char            *wrapped, q[AIGOV_RULES_QUOTE * 4 + 8], msg[256];

    rules = ctx->rules;

    if (!json_is_string(j)) {
        return aigov_rules_fail(ctx, "\"%s\" needs a string (a POSIX "
                                "extended regex), got %s", opname,
                                aigov_rules_type_name(j));
    }

    p = json_string_value(j);
    n = json_string_length(j);

    if (n == 0) {
        return aigov_rules_fail(ctx, "\"%s\" needs a non-empty regex",
                                opname);
    }

    if (n > AIGOV_RULES_MAX_REGEX) {
        return aigov_rules_fail(ctx, "\"%s\": regex longer than %d bytes",
                                opname, AIGOV_RULES_MAX_REGEX);
    }

    if (memchr(p, '\0', n) != NULL) {
        return aigov_rules_fail(ctx, "\"%s\": regex contains a NUL byte",
                                opname);
    }

    if (aigov_rules_regex_check(ctx, opname, p, n) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    if (rules->nregexes == rules->cap_regexes) {
        list = realloc(rules->regexes,
                       (rules->cap_regexes * 2 + 8) * sizeof(*list));
        if (list == NULL) {
            return aigov_rules_nomem(ctx);
        }

        rules->regexes = list;
        rules->cap_regexes = rules->cap_regexes * 2 + 8;
    }

    re = aigov_rules_alloc(rules, sizeof(regex_t));
    if (re == NULL) {
        return aigov_rules_nomem(ctx);
    }

    flags = REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0);

    /* the pattern as written: errors speak of what the user wrote */
    rc = regcomp(re, p, flags);

    if (rc != 0) {
        regerror(rc, re, msg, sizeof(msg));
        return aigov_rules_fail(ctx, "\"%s\": bad regex %s: %s", opname,
                                aigov_rules_quote(q, sizeof(q), p, n), msg);
    }

    regfree(re);

    wrapped = aigov_rules_re_anchor(p, n);
    if (wrapped == NULL) {
        return aigov_rules_nomem(ctx);
    }

    rc = regcomp(re, wrapped, flags);

    free(wrapped);

    if (rc != 0) {
        regerror(rc, re, msg, sizeof(msg));
        return aigov_rules_fail(ctx, "\"%s\": bad regex %s: %s", opname,
                                aigov_rules_quote(q, sizeof(q), p, n), msg);
    }

    rules->regexes[rules->nregexes++] = re;
    c->re = re;

    return AIGOV_RULES_OK;
}


static int
aigov_rules_operand(aigov_rules_ctx_t *ctx, const char *opname,
    const json_t *j, aigov_rules_cond_t *c)
{
    const json_t  *e;
    size_t         i, n;
    int            rc;

    switch (c->op) {

    case AIGOV_RULES_EQ:
    case AIGOV_RULES_NE:
        c->set = aigov_rules_alloc(ctx->rules, sizeof(aigov_rules_scalar_t));
        if (c->set == NULL) {
            return aigov_rules_nomem(ctx);
        }

        c->nset = 1;

        rc = aigov_rules_scalar(ctx, j, c->set);

        if (rc == AIGOV_RULES_DECLINED) {
            return aigov_rules_fail(ctx, "\"%s\" needs a string, number, "
                                    "boolean or null, got %s", opname,
                                    aigov_rules_type_name(j));
        }

        return rc;

    case AIGOV_RULES_IN:
    case AIGOV_RULES_NOT_IN:
        if (!json_is_array(j) || json_array_size(j) == 0) {
            return aigov_rules_fail(ctx, "\"%s\" needs a non-empty array of "
                                    "strings, numbers, booleans or null, "
                                    "got %s", opname,
                                    json_is_array(j)
                                    ? "an empty array"
                                    : aigov_rules_type_name(j));
        }

        n = json_array_size(j);

        if (n > AIGOV_RULES_MAX_SET) {
            return aigov_rules_fail(ctx, "\"%s\": more than %d values",
                                    opname, AIGOV_RULES_MAX_SET);
        }

        c->set = aigov_rules_alloc(ctx->rules,
                                   n * sizeof(aigov_rules_scalar_t));
        if (c->set == NULL) {
            return aigov_rules_nomem(ctx);
        }

        c->nset = n;

        for (i = 0; i < n; i++) {
            e = json_array_get(j, i);
            rc = aigov_rules_scalar(ctx, e, &c->set[i]);

            if (rc == AIGOV_RULES_DECLINED) {
                return aigov_rules_fail(ctx, "\"%s\": element [%zu] is %s; "
                                        "elements must be strings, numbers, "
                                        "booleans or null", opname, i,
                                        aigov_rules_type_name(e));
            }

            if (rc != AIGOV_RULES_OK) {
                return rc;
            }
        }

        return AIGOV_RULES_OK;

    case AIGOV_RULES_LT:
    case AIGOV_RULES_LTE:
    case AIGOV_RULES_GT:
    case AIGOV_RULES_GTE:
        if (!json_is_number(j)) {
            return aigov_rules_fail(ctx, "\"%s\" needs a number, got %s",
                                    opname, aigov_rules_type_name(j));
        }

        aigov_rules_json_num(j, &c->lo);

        return AIGOV_RULES_OK;

    case AIGOV_RULES_BETWEEN:
        if (!json_is_array(j) || json_array_size(j) != 2
            || !json_is_number(json_array_get(j, 0))
            || !json_is_number(json_array_get(j, 1)))
        {
            return aigov_rules_fail(ctx, "\"between\" needs [lo, hi], two "
                                    "numbers");
        }

        aigov_rules_json_num(json_array_get(j, 0), &c->lo);
        aigov_rules_json_num(json_array_get(j, 1), &c->hi);

        if ((c->lo.is_int && c->hi.is_int) ? c->lo.i > c->hi.i
                                           : c->lo.d > c->hi.d)
        {
            return aigov_rules_fail(ctx, "\"between\": lo is greater than "
                                    "hi");
        }

        return AIGOV_RULES_OK;

    case AIGOV_RULES_MATCHES:
    case AIGOV_RULES_MATCHES_I:
        return aigov_rules_regex(ctx, opname, j,
                                 c->op == AIGOV_RULES_MATCHES_I, c);

    case AIGOV_RULES_EXISTS:
        if (!json_is_boolean(j)) {
            return aigov_rules_fail(ctx, "\"exists\" needs true or false, "
                                    "got %s", aigov_rules_type_name(j));
        }

        c->exists = json_is_true(j);

        return AIGOV_RULES_OK;

    default: /* AIGOV_RULES_LEN_GT, AIGOV_RULES_LEN_LT */
        if (!json_is_integer(j) || json_integer_value(j) < 0) {
            return aigov_rules_fail(ctx, "\"%s\" needs a non-negative "
                                    "integer, got %s", opname,
                                    json_is_integer(j)
                                    ? "a negative number"
                                    : aigov_rules_type_name(j));
        }

        c->len = (size_t) json_integer_value(j);

        return AIGOV_RULES_OK;
    }
}


/* ------------------------------------------------------------------------ */
/* load: conditions                                                          */
/* ------------------------------------------------------------------------ */

static int
aigov_rules_list(aigov_rules_ctx_t *ctx, const char *comb, const json_t *j,
    aigov_rules_cond_t *c, int depth)
{
    size_t  i, n, old;

    if (!json_is_array(j)) {
        return aigov_rules_fail(ctx, "\"%s\" needs an array of conditions, "
                                "got %s", comb, aigov_rules_type_name(j));
    }

    n = json_array_size(j);

    if (n > AIGOV_RULES_MAX_CONDS) {
        return aigov_rules_fail(ctx, "more than %d conditions in one rule",
                                AIGOV_RULES_MAX_CONDS);
    }

    if (n) {
        c->kids = aigov_rules_alloc(ctx->rules, n * sizeof(*c->kids));
        if (c->kids == NULL) {
            return aigov_rules_nomem(ctx);
        }
    }

    c->nkids = n;

    for (i = 0; i < n; i++) {
        old = aigov_rules_loc_push(ctx, ".%s[%zu]", comb, i);

        if (aigov_rules_cond(ctx, json_array_get(j, i), &c->kids[i],
                             depth + 1)
            != AIGOV_RULES_OK)
        {
            return AIGOV_RULES_ERROR;
        }

        aigov_rules_loc_pop(ctx, old);
    }

    return AIGOV_RULES_OK;
}


static int
aigov_rules_cond(aigov_rules_ctx_t *ctx, const json_t *j,
    aigov_rules_cond_t *c, int depth)
{
    const char  *key, *comb, *opname;
    json_t      *val, *combval, *field, *opval;
    size_t       klen, old, i;
    int          op;
    char         q[AIGOV_RULES_QUOTE * 4 + 8];

    if (!json_is_object(j)) {
        return aigov_rules_fail(ctx, "a condition must be an object, got %s",
                                aigov_rules_type_name(j));
    }

    if (depth > AIGOV_RULES_MAX_DEPTH) {
        return aigov_rules_fail(ctx, "conditions nested deeper than %d "
                                "levels", AIGOV_RULES_MAX_DEPTH);
    }

    if (++ctx->nconds > AIGOV_RULES_MAX_CONDS) {
        return aigov_rules_fail(ctx, "more than %d conditions in one rule",
                                AIGOV_RULES_MAX_CONDS);
    }

    comb = NULL;
    combval = NULL;
    field = NULL;
    opname = NULL;
    opval = NULL;
    op = 0;

    json_object_keylen_foreach((json_t *) j, key, klen, val) {

        if (aigov_rules_key_is(key, klen, "all")
            || aigov_rules_key_is(key, klen, "any")
            || aigov_rules_key_is(key, klen, "not"))
        {
            if (comb != NULL) {
                return aigov_rules_fail(ctx, "\"%s\" and \"%s\" in one "
                                        "condition: nest them", comb, key);
            }

            comb = key;
            combval = val;
            continue;
        }

        if (aigov_rules_key_is(key, klen, "field")) {
            field = val;
            continue;
        }

        for (i = 0; aigov_rules_ops[i].name; i++) {
            if (aigov_rules_key_is(key, klen, aigov_rules_ops[i].name)) {
                break;
            }
        }

        if (aigov_rules_ops[i].name == NULL) {
            return aigov_rules_fail(ctx, "unknown condition operator %s",
                                    aigov_rules_quote(q, sizeof(q), key,
                                                      klen));
        }

        if (opname != NULL) {
            return aigov_rules_fail(ctx, "two operators, \"%s\" and \"%s\", "
                                    "in one condition: combine conditions "
                                    "with \"all\"", opname, key);
        }

        opname = aigov_rules_ops[i].name;
        op = aigov_rules_ops[i].op;
        opval = val;
    }

    if (comb != NULL) {
        if (field != NULL || opname != NULL) {
            return aigov_rules_fail(ctx, "\"%s\" must be the only key of its "
                                    "condition (found \"%s\" too)", comb,
                                    field != NULL ? "field" : opname);
        }

        if (strcmp(comb, "not") == 0) {
            c->op = AIGOV_RULES_NOT;

            c->kids = aigov_rules_alloc(ctx->rules, sizeof(*c->kids));
            if (c->kids == NULL) {
                return aigov_rules_nomem(ctx);
            }

            c->nkids = 1;

            old = aigov_rules_loc_push(ctx, ".not");

            if (aigov_rules_cond(ctx, combval, c->kids, depth + 1)
                != AIGOV_RULES_OK)
            {
                return AIGOV_RULES_ERROR;
            }

            aigov_rules_loc_pop(ctx, old);

            return AIGOV_RULES_OK;
        }

        c->op = (strcmp(comb, "all") == 0) ? AIGOV_RULES_ALL : AIGOV_RULES_ANY;

        return aigov_rules_list(ctx, comb, combval, c, depth);
    }

    if (field == NULL) {
        if (opname != NULL) {
            return aigov_rules_fail(ctx, "\"%s\" needs a \"field\"", opname);
        }

        return aigov_rules_fail(ctx, "an empty condition: write \"field\" "
                                "and an operator, or \"all\", \"any\", "
                                "\"not\"");
    }

    if (!json_is_string(field)) {
        return aigov_rules_fail(ctx, "\"field\" must be a string (a path "
                                "such as \"$.model\" or \"@method\"), got %s",
                                aigov_rules_type_name(field));
    }

    if (opname == NULL) {
        return aigov_rules_fail(ctx, "the condition on %s has no operator",
                                aigov_rules_quote(q, sizeof(q),
                                                  json_string_value(field),
                                                  json_string_length(field)));
    }

    if (aigov_rules_path(ctx, json_string_value(field),
                         json_string_length(field), &c->path)
        != AIGOV_RULES_OK)
    {
        return AIGOV_RULES_ERROR;
    }

    c->op = op;

    return aigov_rules_operand(ctx, opname, opval, c);
}


/* ------------------------------------------------------------------------ */
/* load: templates                                                           */
/* ------------------------------------------------------------------------ */

static int
aigov_rules_flush(aigov_rules_ctx_t *ctx)
{
    aigov_rules_op_t  *ops;
    char              *text;
    size_t             cap;

    if (ctx->text.failed) {
        return aigov_rules_fail(ctx, ctx->text.failed == AIGOV_RULES_NOMEM
                                     ? "out of memory"
                                     : "larger than %d bytes",
                                AIGOV_RULES_MAX_BODY);
    }

    if (ctx->text.len == 0) {
        return AIGOV_RULES_OK;
    }

    if (ctx->nops == ctx->cap_ops) {
        cap = ctx->cap_ops * 2 + 8;

        ops = realloc(ctx->ops, cap * sizeof(*ops));
        if (ops == NULL) {
            return aigov_rules_nomem(ctx);
        }

        ctx->ops = ops;
        ctx->cap_ops = cap;
    }

    text = aigov_rules_strdup(ctx->rules, ctx->text.data, ctx->text.len);
    if (text == NULL) {
        return aigov_rules_nomem(ctx);
    }

    ctx->ops[ctx->nops].op = AIGOV_RULES_OP_TEXT;
    ctx->ops[ctx->nops].text = text;
    ctx->ops[ctx->nops].len = ctx->text.len;
    ctx->ops[ctx->nops].path = NULL;
    ctx->nops++;

    ctx->text.len = 0;

    return AIGOV_RULES_OK;
}


static int
aigov_rules_emit_sub(aigov_rules_ctx_t *ctx, int op, const char *s,
    size_t len)
{
    aigov_rules_path_t  *path;
    aigov_rules_op_t    *ops;
    size_t               cap;

    if (++ctx->nsubst > AIGOV_RULES_MAX_SUBST) {
        return aigov_rules_fail(ctx, "more than %d substitutions in one "
                                "rule", AIGOV_RULES_MAX_SUBST);
    }

    path = aigov_rules_alloc(ctx->rules, sizeof(*path));
    if (path == NULL) {
        return aigov_rules_nomem(ctx);
    }

    if (aigov_rules_path(ctx, s, len, path) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    if (aigov_rules_flush(ctx) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    if (ctx->nops == ctx->cap_ops) {
        cap = ctx->cap_ops * 2 + 8;

        ops = realloc(ctx->ops, cap * sizeof(*ops));
        if (ops == NULL) {
            return aigov_rules_nomem(ctx);
        }

        ctx->ops = ops;
        ctx->cap_ops = cap;
    }

    ctx->ops[ctx->nops].op = op;
    ctx->ops[ctx->nops].text = NULL;
    ctx->ops[ctx->nops].len = 0;
    ctx->ops[ctx->nops].path = path;
    ctx->nops++;

    return AIGOV_RULES_OK;
}


/* Moves the program built so far into the rules. */
static int
aigov_rules_tpl_end(aigov_rules_ctx_t *ctx, aigov_rules_tpl_t *tpl)
{
    size_t  i;

    if (aigov_rules_flush(ctx) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    tpl->nops = ctx->nops;
    tpl->size = 0;

    if (ctx->nops) {
        tpl->ops = aigov_rules_alloc(ctx->rules,
                                     ctx->nops * sizeof(aigov_rules_op_t));
        if (tpl->ops == NULL) {
            return aigov_rules_nomem(ctx);
        }

        memcpy(tpl->ops, ctx->ops, ctx->nops * sizeof(aigov_rules_op_t));

        for (i = 0; i < ctx->nops; i++) {
            tpl->size += tpl->ops[i].len;
        }
    }

    ctx->nops = 0;

    return AIGOV_RULES_OK;
}


/*
 * A string of the response (filter ESCAPE) or a header value (HEADER):
 * constant runs go to the text, "${path}" become substitutions, "$$" is a
 * literal "$" (so "$${" writes "${" and "$$${$.x}" a '$' and the value).
 */
static int
aigov_rules_tpl_string(aigov_rules_ctx_t *ctx, const char *s, size_t len,
    int filter)
{
    const char  *close;
    size_t       i, lit;
    int          op;

    if (filter == AIGOV_RULES_ESCAPE && len >= 3 && s[0] == '$'
        && s[1] == '{' && s[len - 1] == '}'
        && memchr(s + 2, '}', len - 3) == NULL)
    {
        /* exactly one "${path}": the value keeps its JSON type */
        return aigov_rules_emit_sub(ctx, AIGOV_RULES_OP_JSON, s + 2, len - 3);
    }

    op = (filter == AIGOV_RULES_ESCAPE) ? AIGOV_RULES_OP_STR
                                        : AIGOV_RULES_OP_HEADER;

    if (filter == AIGOV_RULES_ESCAPE) {
        aigov_rules_put(&ctx->text, "\"", 1);
    }

    i = 0;
    lit = 0;

    while (i < len) {

        if (s[i] != '$') {
            i++;
            continue;
        }

        if (i + 1 < len && s[i + 1] == '$') {
            /* "$$": one literal '$', the second one dropped */
            aigov_rules_filter(&ctx->text, filter, s + lit, i + 1 - lit);
            i += 2;
            lit = i;
            continue;
        }

        if (i + 1 < len && s[i + 1] == '{') {
            aigov_rules_filter(&ctx->text, filter, s + lit, i - lit);

            close = memchr(s + i + 2, '}', len - i - 2);
            if (close == NULL) {
                return aigov_rules_fail(ctx, "unclosed \"${\" at offset %zu",
                                        i);
            }

            if (aigov_rules_emit_sub(ctx, op, s + i + 2,
                                     (size_t) (close - (s + i + 2)))
                != AIGOV_RULES_OK)
            {
                return AIGOV_RULES_ERROR;
            }

            i = (size_t) (close - s) + 1;
            lit = i;
            continue;
        }

        i++;
    }

    aigov_rules_filter(&ctx->text, filter, s + lit, len - lit);

    if (filter == AIGOV_RULES_ESCAPE) {
        aigov_rules_put(&ctx->text, "\"", 1);
    }

    return AIGOV_RULES_OK;
}


/* Whether a value of the response holds a "${" anywhere. */
static int
aigov_rules_has_template(const json_t *v, int depth)
{
    json_t  *val;
    size_t   i, n;
    void    *it;

    if (depth > AIGOV_RULES_MAX_NESTING) {
        return 1;           /* let aigov_rules_tpl_value() say why */
    }

    switch (json_typeof(v)) {

    case JSON_STRING:
        n = json_string_length(v);

        return n >= 2 && memchr(json_string_value(v), '$', n) != NULL;

    case JSON_ARRAY:
        n = json_array_size(v);

        for (i = 0; i < n; i++) {
            if (aigov_rules_has_template(json_array_get(v, i), depth + 1)) {
                return 1;
            }
        }

        return 0;

    case JSON_OBJECT:
        for (it = json_object_iter((json_t *) v); it;
             it = json_object_iter_next((json_t *) v, it))
        {
            val = json_object_iter_value(it);

            if (aigov_rules_has_template(val, depth + 1)) {
                return 1;
            }
        }

        return 0;

    default:
        return 0;
    }
}


static int
aigov_rules_tpl_value(aigov_rules_ctx_t *ctx, const json_t *v, int depth)
{
    const char  *key;
    json_t      *val;
    size_t       i, n, klen, old;

    if (depth > AIGOV_RULES_MAX_NESTING) {
        return aigov_rules_fail(ctx, "nested deeper than %d levels",
                                AIGOV_RULES_MAX_NESTING);
    }

    if (!aigov_rules_has_template(v, depth)) {
        aigov_rules_dump(&ctx->text, v, 0);
        return AIGOV_RULES_OK;
    }

    switch (json_typeof(v)) {

    case JSON_STRING:
        return aigov_rules_tpl_string(ctx, json_string_value(v),
                                      json_string_length(v),
                                      AIGOV_RULES_ESCAPE);

    case JSON_ARRAY:
        aigov_rules_put(&ctx->text, "[", 1);

        n = json_array_size(v);

        for (i = 0; i < n; i++) {
            if (i) {
                aigov_rules_put(&ctx->text, ",", 1);
            }

            old = aigov_rules_loc_push(ctx, "[%zu]", i);

            if (aigov_rules_tpl_value(ctx, json_array_get(v, i), depth + 1)
                != AIGOV_RULES_OK)
            {
                return AIGOV_RULES_ERROR;
            }

            aigov_rules_loc_pop(ctx, old);
        }

        aigov_rules_put(&ctx->text, "]", 1);

        return AIGOV_RULES_OK;

    default: /* JSON_OBJECT */
        aigov_rules_put(&ctx->text, "{", 1);

        n = 0;

        json_object_keylen_foreach((json_t *) v, key, klen, val) {
            if (n++) {
                aigov_rules_put(&ctx->text, ",", 1);
            }

            aigov_rules_put_qstring(&ctx->text, key, klen);
            aigov_rules_put(&ctx->text, ":", 1);

            old = aigov_rules_loc_push(ctx, ".%.*s", (int) klen, key);

            if (aigov_rules_tpl_value(ctx, val, depth + 1) != AIGOV_RULES_OK)
            {
                return AIGOV_RULES_ERROR;
            }

            aigov_rules_loc_pop(ctx, old);
        }

        aigov_rules_put(&ctx->text, "}", 1);

        return AIGOV_RULES_OK;
    }
}


/* ------------------------------------------------------------------------ */
/* load: actions and rules                                                   */
/* ------------------------------------------------------------------------ */

static int
aigov_rules_token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || (c != '\0' && c < 0x7f
                                         && strchr("!#$%&'*+-.^_`|~", c));
}


static int
aigov_rules_eq_nocase(const char *a, const char *b, size_t len)
{
    size_t  i;
    char    x, y;

    for (i = 0; i < len; i++) {
        x = a[i];
        y = b[i];

        if (x >= 'A' && x <= 'Z') {
            x = (char) (x | 0x20);
        }

        if (y >= 'A' && y <= 'Z') {
            y = (char) (y | 0x20);
        }

        if (x != y) {
            return 0;
        }
    }

    return 1;
}


static int
aigov_rules_headers(aigov_rules_ctx_t *ctx, const json_t *j,
    aigov_rules_action_t *act)
{
    aigov_rules_hdr_t  *h;
    const char         *key, *s;
    json_t             *val;
    size_t              klen, len, i, n, old, top;
    char                q[AIGOV_RULES_QUOTE * 4 + 8];

    top = aigov_rules_loc_push(ctx, "headers");

    if (!json_is_object(j)) {
        return aigov_rules_fail(ctx, "must be an object, got %s",
                                aigov_rules_type_name(j));
    }

    n = json_object_size(j);

    if (n > AIGOV_RULES_MAX_HEADERS) {
        return aigov_rules_fail(ctx, "more than %d headers",
                                AIGOV_RULES_MAX_HEADERS);
    }

    if (n) {
        act->headers = aigov_rules_alloc(ctx->rules,
                                         n * sizeof(*act->headers));
        if (act->headers == NULL) {
            return aigov_rules_nomem(ctx);
        }
    }

    json_object_keylen_foreach((json_t *) j, key, klen, val) {

        aigov_rules_quote(q, sizeof(q), key, klen);

        for (i = 0; i < klen; i++) {
            if (!aigov_rules_token_char((unsigned char) key[i])) {
                break;
            }
        }

        if (klen == 0 || i < klen || klen > AIGOV_RULES_MAX_HEADER_NAME) {
            return aigov_rules_fail(ctx, "bad header name %s (an HTTP token "
                                    "of 1..%d characters)", q,
                                    AIGOV_RULES_MAX_HEADER_NAME);
        }

        for (i = 0; aigov_rules_hop_headers[i]; i++) {
            if (strlen(aigov_rules_hop_headers[i]) == klen
                && aigov_rules_eq_nocase(key, aigov_rules_hop_headers[i],
                                         klen))
            {
                return aigov_rules_fail(ctx, "header %s is nginx's to set, "
                                        "not a rule's", q);
            }
        }

        for (i = 0; i < act->nheaders; i++) {
            if (act->headers[i].name_len == klen
                && aigov_rules_eq_nocase(key, act->headers[i].name, klen))
            {
                return aigov_rules_fail(ctx, "header %s twice (names are "
                                        "case-insensitive)", q);
            }
        }

        old = aigov_rules_loc_push(ctx, ".%.*s", (int) klen, key);

        if (!json_is_string(val)) {
            return aigov_rules_fail(ctx, "the value must be a string, got %s",
                                    aigov_rules_type_name(val));
        }

        s = json_string_value(val);
        len = json_string_length(val);

        if (len > AIGOV_RULES_MAX_HEADER_VALUE) {
            return aigov_rules_fail(ctx, "the value is longer than %d bytes",
                                    AIGOV_RULES_MAX_HEADER_VALUE);
        }

        for (i = 0; i < len; i++) {
            if (((unsigned char) s[i] < 0x20 && s[i] != '\t')
                || s[i] == 0x7f)
            {
                return aigov_rules_fail(ctx, "the value has a control "
                                        "character (0x%02x) at offset %zu",
                                        (unsigned char) s[i], i);
            }
        }

        h = &act->headers[act->nheaders];

        h->name = aigov_rules_strdup(ctx->rules, key, klen);
        if (h->name == NULL) {
            return aigov_rules_nomem(ctx);
        }

        h->name_len = klen;

        if (aigov_rules_tpl_string(ctx, s, len, AIGOV_RULES_HEADER)
            != AIGOV_RULES_OK
            || aigov_rules_tpl_end(ctx, &h->value) != AIGOV_RULES_OK)
        {
            return AIGOV_RULES_ERROR;
        }

        aigov_rules_loc_pop(ctx, old);

        act->nheaders++;
    }

    aigov_rules_loc_pop(ctx, top);

    return AIGOV_RULES_OK;
}


static int
aigov_rules_action(aigov_rules_ctx_t *ctx, const json_t *j,
    aigov_rules_action_t *act)
{
    const json_t  *v;
    size_t         old;

    ctx->nsubst = 0;

    v = json_object_get(j, "status");

    if (v == NULL) {
        return aigov_rules_fail(ctx, "\"status\" is missing");
    }

    if (!json_is_integer(v) || json_integer_value(v) < 100
        || json_integer_value(v) > 599)
    {
        return aigov_rules_fail(ctx, "\"status\" must be an integer from 100 "
                                "to 599");
    }

    act->status = (int) json_integer_value(v);

    v = json_object_get(j, "headers");

    if (v != NULL && aigov_rules_headers(ctx, v, act) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    v = json_object_get(j, "response");

    if (v != NULL) {
        old = aigov_rules_loc_push(ctx, "response");

        if (aigov_rules_tpl_value(ctx, v, 1) != AIGOV_RULES_OK
            || aigov_rules_tpl_end(ctx, &act->body) != AIGOV_RULES_OK)
        {
            return AIGOV_RULES_ERROR;
        }

        /* its constant parts alone: it could never be rendered */
        if (act->body.size > AIGOV_RULES_MAX_BODY) {
            return aigov_rules_fail(ctx, "larger than %d bytes",
                                    AIGOV_RULES_MAX_BODY);
        }

        aigov_rules_loc_pop(ctx, old);

        act->has_body = 1;
    }

    return AIGOV_RULES_OK;
}


/* A string, or lines: an array of strings. */
static int
aigov_rules_comment(const json_t *j)
{
    size_t  i;

    if (json_is_string(j)) {
        return 1;
    }

    if (!json_is_array(j)) {
        return 0;
    }

    for (i = 0; i < json_array_size(j); i++) {
        if (!json_is_string(json_array_get(j, i))) {
            return 0;
        }
    }

    return 1;
}


/* Refuses keys outside the list: a typo ("respnse") must not pass. */
static int
aigov_rules_known_keys(aigov_rules_ctx_t *ctx, const json_t *j,
    const char **known, const char *expected)
{
    const char  *key;
    json_t      *val;
    size_t       klen, i;
    char         q[AIGOV_RULES_QUOTE * 4 + 8];

    json_object_keylen_foreach((json_t *) j, key, klen, val) {
        for (i = 0; known[i]; i++) {
            if (aigov_rules_key_is(key, klen, known[i])) {
                break;
            }
        }

        if (known[i] == NULL) {
            return aigov_rules_fail(ctx, "unknown key %s (expected %s)",
                                    aigov_rules_quote(q, sizeof(q), key,
                                                      klen),
                                    expected);
        }

        if (aigov_rules_key_is(key, klen, "comment")
            && !aigov_rules_comment(val))
        {
            return aigov_rules_fail(ctx, "\"comment\" must be a string or "
                                    "an array of strings");
        }
    }

    return AIGOV_RULES_OK;
}


static int
aigov_rules_valid_name(const char *s, size_t len)
{
    size_t  i;
    char    c;

    if (len == 0 || len > AIGOV_RULES_MAX_NAME) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9')
              || c == '.' || c == '_' || c == '-' || c == ':'))
        {
            return 0;
        }
    }

    return 1;
}


static int
aigov_rules_rule(aigov_rules_ctx_t *ctx, const json_t *j, size_t i)
{
    static const char   *known[] = {
        "name", "when", "status", "headers", "response", "comment", NULL
    };

    aigov_rules_rule_t  *rule;
    const json_t        *v;
    const char          *name;
    size_t               len, k, old;
    char                 q[AIGOV_RULES_QUOTE * 4 + 8];

    rule = &ctx->rules->rules[i];

    snprintf(ctx->label, sizeof(ctx->label), "rule #%zu", i + 1);
    aigov_rules_loc_pop(ctx, 0);
    ctx->nconds = 0;

    if (!json_is_object(j)) {
        return aigov_rules_fail(ctx, "must be an object, got %s",
                                aigov_rules_type_name(j));
    }

    v = json_object_get(j, "name");

    if (v == NULL) {
        return aigov_rules_fail(ctx, "\"name\" is missing");
    }

    if (!json_is_string(v)) {
        return aigov_rules_fail(ctx, "\"name\" must be a string, got %s",
                                aigov_rules_type_name(v));
    }

    name = json_string_value(v);
    len = json_string_length(v);

    if (!aigov_rules_valid_name(name, len)) {
        return aigov_rules_fail(ctx, "bad name %s (1..%d of A-Z a-z 0-9 "
                                ". _ : -)",
                                aigov_rules_quote(q, sizeof(q), name, len),
                                AIGOV_RULES_MAX_NAME);
    }

    if (strcmp(name, "default") == 0) {
        return aigov_rules_fail(ctx, "the name \"default\" is reserved");
    }

    snprintf(ctx->label, sizeof(ctx->label), "rule \"%s\" (#%zu)", name,
             i + 1);

    for (k = 0; k < i; k++) {
        if (strcmp(ctx->rules->rules[k].act.name, name) == 0) {
            return aigov_rules_fail(ctx, "duplicate name (rule #%zu has it)",
                                    k + 1);
        }
    }

    rule->act.name = aigov_rules_strdup(ctx->rules, name, len);
    if (rule->act.name == NULL) {
        return aigov_rules_nomem(ctx);
    }

    rule->act.index = i + 1;

    if (aigov_rules_known_keys(ctx, j, known, "\"name\", \"when\", "
                               "\"status\", \"headers\", \"response\", "
                               "\"comment\"")
        != AIGOV_RULES_OK)
    {
        return AIGOV_RULES_ERROR;
    }

    v = json_object_get(j, "when");

    if (v == NULL) {
        return aigov_rules_fail(ctx, "\"when\" is missing (write "
                                "{\"all\": []} to match every request)");
    }

    old = aigov_rules_loc_push(ctx, "when");

    if (aigov_rules_cond(ctx, v, &rule->when, 1) != AIGOV_RULES_OK) {
        return AIGOV_RULES_ERROR;
    }

    aigov_rules_loc_pop(ctx, old);

    return aigov_rules_action(ctx, j, &rule->act);
}


static int
aigov_rules_default(aigov_rules_ctx_t *ctx, const json_t *j)
{
    static const char  *known[] = {
        "status", "headers", "response", "comment", NULL
    };

    snprintf(ctx->label, sizeof(ctx->label), "default");
    aigov_rules_loc_pop(ctx, 0);

    if (!json_is_object(j)) {
        return aigov_rules_fail(ctx, "must be an object, got %s",
                                aigov_rules_type_name(j));
    }

    if (aigov_rules_known_keys(ctx, j, known, "\"status\", \"headers\", "
                               "\"response\", \"comment\"")
        != AIGOV_RULES_OK)
    {
        return AIGOV_RULES_ERROR;
    }

    ctx->rules->dflt.name = "default";
    ctx->rules->dflt.index = 0;
    ctx->rules->has_default = 1;

    return aigov_rules_action(ctx, j, &ctx->rules->dflt);
}


static int
aigov_rules_top(aigov_rules_ctx_t *ctx, const json_t *doc)
{
    static const char  *known[] = { "rules", "default", "comment", NULL };

    const json_t       *list, *dflt;
    size_t              i, n;

    if (!json_is_object(doc)) {
        return aigov_rules_fail(ctx, "the rules file must be a JSON object, "
                                "got %s", aigov_rules_type_name(doc));
    }

    if (aigov_rules_known_keys(ctx, doc, known, "\"rules\", \"default\", "
                               "\"comment\"")
        != AIGOV_RULES_OK)
    {
        return AIGOV_RULES_ERROR;
    }

    list = json_object_get(doc, "rules");
    dflt = json_object_get(doc, "default");

    if (list != NULL && !json_is_array(list)) {
        return aigov_rules_fail(ctx, "\"rules\" must be an array, got %s",
                                aigov_rules_type_name(list));
    }

    n = (list != NULL) ? json_array_size(list) : 0;

    if (n == 0 && dflt == NULL) {
        return aigov_rules_fail(ctx, "no rules: \"rules\" is missing or "
                                "empty and there is no \"default\"");
    }

    if (n > AIGOV_RULES_MAX_RULES) {
        return aigov_rules_fail(ctx, "too many rules: %zu (at most %d)", n,
                                AIGOV_RULES_MAX_RULES);
    }

    if (n) {
        ctx->rules->rules = aigov_rules_alloc(ctx->rules,
                                              n * sizeof(aigov_rules_rule_t));
        if (ctx->rules->rules == NULL) {
            return aigov_rules_nomem(ctx);
        }
    }

    for (i = 0; i < n; i++) {
        if (aigov_rules_rule(ctx, json_array_get(list, i), i)
            != AIGOV_RULES_OK)
        {
            return AIGOV_RULES_ERROR;
        }

        ctx->rules->nrules++;
    }

    if (dflt != NULL) {
        return aigov_rules_default(ctx, dflt);
    }

    return AIGOV_RULES_OK;
}


aigov_rules_t *
aigov_rules_load(const char *json, size_t len, char *err, size_t errlen)
{
    aigov_rules_ctx_t   ctx;
    json_t             *doc;
    json_error_t        jerr;
    int                 rc;

    memset(&ctx, 0, sizeof(ctx));
    ctx.err = err;
    ctx.errlen = errlen;
    ctx.text.limit = AIGOV_RULES_MAX_BODY;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    if (json == NULL || len == 0) {
        aigov_rules_fail(&ctx, "the rules file is empty");
        return NULL;
    }

    doc = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                     &jerr);
    if (doc == NULL) {
        aigov_rules_fail(&ctx, "invalid JSON at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
        return NULL;
    }

    ctx.rules = calloc(1, sizeof(aigov_rules_t));
    if (ctx.rules == NULL) {
        json_decref(doc);
        aigov_rules_nomem(&ctx);
        return NULL;
    }

    rc = aigov_rules_top(&ctx, doc);

    json_decref(doc);
    aigov_rules_buf_free(&ctx.text);
    free(ctx.ops);

    if (rc != AIGOV_RULES_OK) {
        aigov_rules_free(ctx.rules);
        return NULL;
    }

    return ctx.rules;
}


void
aigov_rules_free(aigov_rules_t *rules)
{
    aigov_rules_block_t  *b, *next;
    size_t                i;

    if (rules == NULL) {
        return;
    }

    for (i = 0; i < rules->nregexes; i++) {
        regfree(rules->regexes[i]);
    }

    free(rules->regexes);
    free(rules->attrs);

    for (b = rules->blocks; b; b = next) {
        next = b->next;
        free(b);
    }

    free(rules);
}


size_t
aigov_rules_count(const aigov_rules_t *rules)
{
    return rules->nrules;
}


const char *
aigov_rules_name(const aigov_rules_t *rules, size_t i)
{
    return (i < rules->nrules) ? rules->rules[i].act.name : NULL;
}


int
aigov_rules_uses_body(const aigov_rules_t *rules)
{
    return rules->uses_body;
}


size_t
aigov_rules_nattrs(const aigov_rules_t *rules)
{
    return rules->nattrs;
}


const char *
aigov_rules_attr_name(const aigov_rules_t *rules, size_t i)
{
    return (i < rules->nattrs) ? rules->attrs[i] : NULL;
}


/* ------------------------------------------------------------------------ */
/* evaluation                                                                */
/* ------------------------------------------------------------------------ */

static int
aigov_rules_resolve(const aigov_rules_path_t *path,
    const aigov_rules_env_t *env, aigov_rules_val_t *v)
{
    const json_t  *j;
    size_t         i, n;
    long           index;

    v->json = NULL;
    v->str = NULL;
    v->len = 0;

    if (path->attr != NULL) {
        for (i = 0; i < env->nattrs; i++) {
            if (env->attrs[i].name_len == path->attr_len
                && memcmp(env->attrs[i].name, path->attr, path->attr_len) == 0)
            {
                v->str = env->attrs[i].value;
                v->len = env->attrs[i].value_len;

                if (v->str == NULL) {
                    v->str = "";
                    v->len = 0;
                }
                return 1;
            }
        }

        return 0;
    }

    j = env->body;

    if (j == NULL) {
        return 0;
    }

    for (i = 0; i < path->nsteps; i++) {

        if (path->steps[i].key != NULL) {
            if (!json_is_object(j)) {
                return 0;
            }

            j = json_object_get(j, path->steps[i].key);

        } else {
            if (!json_is_array(j)) {
                return 0;
            }

            n = json_array_size(j);
            index = path->steps[i].index;

            if (index < 0) {
                if ((size_t) -index > n) {
                    return 0;
                }

                j = json_array_get(j, n - (size_t) -index);

            } else {
                j = json_array_get(j, (size_t) index);
            }
        }

        if (j == NULL) {
            return 0;
        }
    }

    v->json = j;

    return 1;
}


static int
aigov_rules_val_string(const aigov_rules_val_t *v, const char **s,
    size_t *len)
{
    if (v->json == NULL) {
        *s = v->str;
        *len = v->len;
        return 1;
    }

    if (json_is_string(v->json)) {
        *s = json_string_value(v->json);
        *len = json_string_length(v->json);
        return 1;
    }

    return 0;
}


/* A string that is, in full, a JSON number. */
static int
aigov_rules_parse_number(const char *s, size_t len, aigov_rules_num_t *num)
{
    size_t  i;
    int     real;
    char    buf[64];

    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }

    i = 0;
    real = 0;

    if (s[i] == '-') {
        i++;
    }

    if (i < len && s[i] == '0') {
        i++;

    } else if (i < len && s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }

    } else {
        return 0;
    }

    if (i < len && s[i] == '.') {
        i++;

        if (i == len || s[i] < '0' || s[i] > '9') {
            return 0;
        }

        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }

        real = 1;
    }

    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;

        if (i < len && (s[i] == '+' || s[i] == '-')) {
            i++;
        }

        if (i == len || s[i] < '0' || s[i] > '9') {
            return 0;
        }

        while (i < len && s[i] >= '0' && s[i] <= '9') {
            i++;
        }

        real = 1;
    }

    if (i != len) {
        return 0;
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    if (!real) {
        errno = 0;
        num->i = strtoll(buf, NULL, 10);

        if (errno == 0) {
            num->is_int = 1;
            num->d = (double) num->i;
            return 1;
        }
    }

    num->is_int = 0;
    num->i = 0;
    num->d = strtod(buf, NULL);

    return isfinite(num->d);
}


static int
aigov_rules_val_number(const aigov_rules_val_t *v, aigov_rules_num_t *num)
{
    const char  *s;
    size_t       len;

    if (v->json != NULL && json_is_number(v->json)) {
        aigov_rules_json_num(v->json, num);
        return 1;
    }

    if (aigov_rules_val_string(v, &s, &len)) {
        return aigov_rules_parse_number(s, len, num);
    }

    return 0;
}


static int
aigov_rules_num_cmp(const aigov_rules_num_t *a, const aigov_rules_num_t *b)
{
    if (a->is_int && b->is_int) {
        return (a->i > b->i) - (a->i < b->i);
    }

    return (a->d > b->d) - (a->d < b->d);
}


static int
aigov_rules_eq(const aigov_rules_val_t *v, const aigov_rules_scalar_t *sc)
{
    aigov_rules_num_t   num;
    const char         *s;
    size_t              len;

    switch (sc->type) {

    case AIGOV_RULES_V_STRING:
        return aigov_rules_val_string(v, &s, &len) && len == sc->len
               && memcmp(s, sc->str, len) == 0;

    case AIGOV_RULES_V_NUMBER:
        return aigov_rules_val_number(v, &num)
               && aigov_rules_num_cmp(&num, &sc->num) == 0;

    case AIGOV_RULES_V_BOOL:
        return v->json != NULL && json_is_boolean(v->json)
               && json_is_true(v->json) == sc->boolean;

    default: /* AIGOV_RULES_V_NULL */
        return v->json != NULL && json_is_null(v->json);
    }
}


static int
aigov_rules_in(const aigov_rules_val_t *v, const aigov_rules_cond_t *c)
{
    size_t  i;

    for (i = 0; i < c->nset; i++) {
        if (aigov_rules_eq(v, &c->set[i])) {
            return 1;
        }
    }

    return 0;
}


/*
 * regexec() wants a NUL after the subject even with REG_STARTEND (which
 * lets NUL bytes inside a body string be matched too): jansson's strings
 * have one, attribute values (nginx strings) are copied to get one.
 */
static int
aigov_rules_match_regex(const regex_t *re, const char *s, size_t len,
    int terminated)
{
    char        stack[1024], *p;
    int         rc;
#ifdef REG_STARTEND
    regmatch_t  m;

    if (len > 0x7fffffff) {
        /* regoff_t is an int on glibc: no request is that large */
        return 0;
    }
#endif

    p = (char *) s;

    if (!terminated) {
        p = (len < sizeof(stack)) ? stack : malloc(len + 1);
        if (p == NULL) {
            return 0;
        }

        if (len) {
            memcpy(p, s, len);
        }

        p[len] = '\0';
    }

#ifdef REG_STARTEND
    m.rm_so = 0;
    m.rm_eo = (regoff_t) len;

    rc = regexec(re, p, 1, &m, REG_STARTEND);
#else
    rc = regexec(re, p, 0, NULL, 0);
#endif

    if (p != s && p != stack) {
        free(p);
    }

    return rc == 0;
}


static int
aigov_rules_test(const aigov_rules_cond_t *c, const aigov_rules_env_t *env)
{
    aigov_rules_val_t   v;
    aigov_rules_num_t   num;
    const char         *s;
    size_t              i, len;
    int                 found, cmp;

    switch (c->op) {

    case AIGOV_RULES_ALL:
        for (i = 0; i < c->nkids; i++) {
            if (!aigov_rules_test(&c->kids[i], env)) {
                return 0;
            }
        }
        return 1;

    case AIGOV_RULES_ANY:
        for (i = 0; i < c->nkids; i++) {
            if (aigov_rules_test(&c->kids[i], env)) {
                return 1;
            }
        }
        return 0;

    case AIGOV_RULES_NOT:
        return !aigov_rules_test(c->kids, env);
    }

    found = aigov_rules_resolve(&c->path, env, &v);

    switch (c->op) {

    case AIGOV_RULES_EXISTS:
        return found == c->exists;

    case AIGOV_RULES_NE:
        return !found || !aigov_rules_eq(&v, c->set);

    case AIGOV_RULES_NOT_IN:
        return !found || !aigov_rules_in(&v, c);
    }

    if (!found) {
        return 0;
    }

    switch (c->op) {

    case AIGOV_RULES_EQ:
        return aigov_rules_eq(&v, c->set);

    case AIGOV_RULES_IN:
        return aigov_rules_in(&v, c);

    case AIGOV_RULES_LT:
    case AIGOV_RULES_LTE:
    case AIGOV_RULES_GT:
    case AIGOV_RULES_GTE:
        if (!aigov_rules_val_number(&v, &num)) {
            return 0;
        }

        cmp = aigov_rules_num_cmp(&num, &c->lo);

        switch (c->op) {
        case AIGOV_RULES_LT:  return cmp < 0;
        case AIGOV_RULES_LTE: return cmp <= 0;
        case AIGOV_RULES_GT:  return cmp > 0;
        default:              return cmp >= 0;
        }

    case AIGOV_RULES_BETWEEN:
        return aigov_rules_val_number(&v, &num)
               && aigov_rules_num_cmp(&num, &c->lo) >= 0
               && aigov_rules_num_cmp(&num, &c->hi) <= 0;

    case AIGOV_RULES_MATCHES:
    case AIGOV_RULES_MATCHES_I:
        return aigov_rules_val_string(&v, &s, &len)
               && aigov_rules_match_regex(c->re, s, len, v.json != NULL);

    default: /* AIGOV_RULES_LEN_GT, AIGOV_RULES_LEN_LT */
        if (v.json != NULL && json_is_array(v.json)) {
            len = json_array_size(v.json);

        } else if (!aigov_rules_val_string(&v, &s, &len)) {
            return 0;
        }

        return (c->op == AIGOV_RULES_LEN_GT) ? len > c->len : len < c->len;
    }
}


int
aigov_rules_match(const aigov_rules_t *rules, const struct json_t *body,
    const aigov_rules_attr_t *attrs, size_t nattrs)
{
    aigov_rules_env_t  env;
    size_t             i;

    env.body = body;
    env.attrs = attrs;
    env.nattrs = attrs ? nattrs : 0;

    for (i = 0; i < rules->nrules; i++) {
        if (aigov_rules_test(&rules->rules[i].when, &env)) {
            return (int) i;
        }
    }

    return -1;
}


/* One substituted value, through the filter of where it lands. */
static int
aigov_rules_put_value(aigov_rules_buf_t *b, int op, const aigov_rules_val_t *v,
    int found)
{
    aigov_rules_buf_t   tmp;
    const char         *s;
    size_t              len;
    int                 filter, rc;

    if (op == AIGOV_RULES_OP_JSON) {
        if (!found) {
            return aigov_rules_put(b, "\"\"", 2);
        }

        if (aigov_rules_val_string(v, &s, &len)) {
            return aigov_rules_put_qstring(b, s, len);
        }

        return aigov_rules_dump(b, v->json, 0);
    }

    if (!found) {
        return AIGOV_RULES_OK;
    }

    filter = (op == AIGOV_RULES_OP_STR) ? AIGOV_RULES_ESCAPE
                                        : AIGOV_RULES_HEADER;

    if (aigov_rules_val_string(v, &s, &len)) {
        return aigov_rules_filter(b, filter, s, len);
    }

    if (!json_is_object(v->json) && !json_is_array(v->json)) {
        /* numbers, booleans, null: ASCII that needs no filtering */
        return aigov_rules_dump(b, v->json, 0);
    }

    /* the compact JSON of an object, then filtered as text */
    memset(&tmp, 0, sizeof(tmp));
    tmp.limit = b->limit - b->len;

    aigov_rules_dump(&tmp, v->json, 0);

    if (tmp.failed) {
        b->failed = tmp.failed;
        rc = AIGOV_RULES_ERROR;

    } else {
        rc = aigov_rules_filter(b, filter, tmp.data, tmp.len);
    }

    aigov_rules_buf_free(&tmp);

    return rc;
}


static int
aigov_rules_render(aigov_rules_buf_t *b, const aigov_rules_tpl_t *tpl,
    const aigov_rules_env_t *env)
{
    aigov_rules_val_t   v;
    size_t              i;
    int                 found;

    for (i = 0; i < tpl->nops; i++) {

        if (tpl->ops[i].op == AIGOV_RULES_OP_TEXT) {
            aigov_rules_put(b, tpl->ops[i].text, tpl->ops[i].len);

        } else {
            found = aigov_rules_resolve(tpl->ops[i].path, env, &v);
            aigov_rules_put_value(b, tpl->ops[i].op, &v, found);
        }

        if (b->failed) {
            return AIGOV_RULES_ERROR;
        }
    }

    return AIGOV_RULES_OK;
}


static int
aigov_rules_eval_fail(aigov_rules_result_t *out, aigov_rules_buf_t *body,
    aigov_rules_buf_t *hbuf, const char *limit_reason)
{
    int  failed;

    failed = body->failed ? body->failed : hbuf->failed;

    aigov_rules_buf_free(body);
    aigov_rules_buf_free(hbuf);

    out->body = NULL;
    out->body_len = 0;
    out->nheaders = 0;
    out->hbuf = NULL;
    out->error = (failed == AIGOV_RULES_LIMIT) ? limit_reason
                                               : "out of memory";

    return AIGOV_RULES_ERROR;
}


int
aigov_rules_eval(const aigov_rules_t *rules, const struct json_t *body,
    const aigov_rules_attr_t *attrs, size_t nattrs,
    aigov_rules_result_t *out)
{
    const aigov_rules_action_t  *act;
    const aigov_rules_hdr_t     *h;
    aigov_rules_env_t            env;
    aigov_rules_buf_t            b, hb;
    size_t                       i, start[AIGOV_RULES_MAX_HEADERS];
    int                          k;

    memset(out, 0, sizeof(*out));

    k = aigov_rules_match(rules, body, attrs, nattrs);

    if (k >= 0) {
        act = &rules->rules[k].act;

    } else if (rules->has_default) {
        act = &rules->dflt;

    } else {
        return AIGOV_RULES_DECLINED;
    }

    out->status = act->status;
    out->rule = act->name;
    out->index = act->index;

    env.body = body;
    env.attrs = attrs;
    env.nattrs = attrs ? nattrs : 0;

    memset(&b, 0, sizeof(b));
    memset(&hb, 0, sizeof(hb));

    if (act->has_body) {
        b.limit = AIGOV_RULES_MAX_BODY;

        /* the constant text plus room for a few substitutions */
        if (aigov_rules_reserve(&b, act->body.size + 64 < b.limit
                                    ? act->body.size + 64 : b.limit)
            != AIGOV_RULES_OK
            || aigov_rules_render(&b, &act->body, &env) != AIGOV_RULES_OK)
        {
            return aigov_rules_eval_fail(out, &b, &hb,
                                         "the response body is larger than "
                                         "65536 bytes");
        }

        out->body = b.data;
        out->body_len = b.len;
    }

    for (i = 0; i < act->nheaders; i++) {
        h = &act->headers[i];

        out->headers[i].name = h->name;
        out->headers[i].name_len = h->name_len;

        start[i] = 0;

        if (h->value.nops == 0) {
            out->headers[i].value = "";
            out->headers[i].value_len = 0;
            continue;
        }

        if (h->value.nops == 1 && h->value.ops[0].op == AIGOV_RULES_OP_TEXT) {
            /* constant: borrowed from the rules */
            out->headers[i].value = h->value.ops[0].text;
            out->headers[i].value_len = h->value.ops[0].len;
            continue;
        }

        start[i] = hb.len;
        hb.limit = hb.len + AIGOV_RULES_MAX_HEADER_VALUE + 1;

        if (aigov_rules_render(&hb, &h->value, &env) != AIGOV_RULES_OK
            || hb.len - start[i] > AIGOV_RULES_MAX_HEADER_VALUE
            || aigov_rules_put(&hb, "", 1) != AIGOV_RULES_OK)
        {
            if (!hb.failed) {
                hb.failed = AIGOV_RULES_LIMIT;
            }

            out->body = NULL;
            return aigov_rules_eval_fail(out, &b, &hb,
                                         "a header value is longer than 4096 "
                                         "bytes");
        }

        /* the NUL just added ends the value; it is not part of it */
        out->headers[i].value = NULL;
        out->headers[i].value_len = hb.len - 1 - start[i];
    }

    out->nheaders = act->nheaders;
    out->hbuf = hb.data;

    /* the buffer may have moved while growing: point into it only now */
    for (i = 0; i < act->nheaders; i++) {
        if (out->headers[i].value == NULL) {
            out->headers[i].value = hb.data + start[i];
        }
    }

    return AIGOV_RULES_OK;
}


void
aigov_rules_result_free(aigov_rules_result_t *out)
{
    if (out == NULL) {
        return;
    }

    free(out->body);
    free(out->hbuf);

    out->body = NULL;
    out->body_len = 0;
    out->hbuf = NULL;
    out->nheaders = 0;
}
