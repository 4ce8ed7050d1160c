/*
 * ngx_aigov shadow traffic: HTTP/1.x response reader, JSON paths and JSON
 * agreement.  Plain C (libc + jansson), see include/aigov_shadow.h.
 */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_shadow.h"


#define AIGOV_HTTP_S_STATUS      0
#define AIGOV_HTTP_S_HEADER      1
#define AIGOV_HTTP_S_LENGTH      2
#define AIGOV_HTTP_S_CLOSE       3
#define AIGOV_HTTP_S_CHUNK_SIZE  4
#define AIGOV_HTTP_S_CHUNK_DATA  5
#define AIGOV_HTTP_S_CHUNK_CRLF  6
#define AIGOV_HTTP_S_TRAILER     7
#define AIGOV_HTTP_S_DONE        8
#define AIGOV_HTTP_S_ERROR       9

#define AIGOV_HTTP_MAX_CHUNK     ((uint64_t) 1 << 60)

#define AIGOV_JSON_MAX_DEPTH     64


static int
aigov_http_fail(aigov_http_resp_t *r, const char *why)
{
    r->state = AIGOV_HTTP_S_ERROR;
    r->error = why;

    return AIGOV_HTTP_ERROR;
}


static int
aigov_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}


static int
aigov_ieq(const char *a, size_t alen, const char *b)
{
    size_t  i, blen;

    blen = strlen(b);

    if (alen != blen) {
        return 0;
    }

    for (i = 0; i < alen; i++) {
        if (aigov_lower((unsigned char) a[i]) != b[i]) {
            return 0;
        }
    }

    return 1;
}


static int
aigov_is_tchar(int c)
{
    /* RFC 9110 token characters */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')
           || (c >= 'A' && c <= 'Z') || (c && strchr("!#$%&'*+-.^_`|~", c));
}


static int
aigov_http_store(aigov_http_resp_t *r, const char *data, size_t n)
{
    char    *p;
    size_t   keep, cap;

    r->body_total += n;

    if (r->body_len >= r->max_body) {
        if (n) {
            r->truncated = 1;
        }
        return AIGOV_OK;
    }

    keep = r->max_body - r->body_len;

    if (keep < n) {
        r->truncated = 1;
    } else {
        keep = n;
    }

    if (r->body_len + keep > r->body_cap) {
        cap = r->body_cap ? r->body_cap * 2 : 4096;

        if (r->body_cap == 0 && r->content_length > 0 && !r->chunked) {
            cap = (size_t) r->content_length;
        }

        if (cap < r->body_len + keep) {
            cap = r->body_len + keep;
        }

        if (cap > r->max_body) {
            cap = r->max_body;
        }

        p = realloc(r->body, cap);
        if (p == NULL) {
            return AIGOV_ERROR;
        }

        r->body = p;
        r->body_cap = cap;
    }

    memcpy(r->body + r->body_len, data, keep);
    r->body_len += keep;

    return AIGOV_OK;
}


static int
aigov_http_status_line(aigov_http_resp_t *r, const char *s, size_t len)
{
    /* HTTP/1.x SP 3DIGIT [SP reason] */

    if (len < 12 || memcmp(s, "HTTP/1.", 7) != 0
        || (s[7] != '0' && s[7] != '1') || s[8] != ' '
        || s[9] < '1' || s[9] > '9' || s[10] < '0' || s[10] > '9'
        || s[11] < '0' || s[11] > '9' || (len > 12 && s[12] != ' '))
    {
        return AIGOV_ERROR;
    }

    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    r->version = (s[7] == '1') ? 11 : 10;

    return AIGOV_OK;
}


static int
aigov_http_header_line(aigov_http_resp_t *r, const char *s, size_t len)
{
    size_t    i, nlen, vlen, k, start;
    int64_t   cl;
    const char  *name, *value, *last;

    if (s[0] == ' ' || s[0] == '\t') {
        return aigov_http_fail(r, "obsolete header line folding");
    }

    for (i = 0; i < len && s[i] != ':'; i++) {
        if (!aigov_is_tchar((unsigned char) s[i])) {
            return aigov_http_fail(r, "invalid header name");
        }
    }

    if (i == len || i == 0) {
        return aigov_http_fail(r, "invalid header line");
    }

    name = s;
    nlen = i;

    value = s + i + 1;
    vlen = len - i - 1;

    while (vlen && (value[0] == ' ' || value[0] == '\t')) {
        value++;
        vlen--;
    }

    while (vlen && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t')) {
        vlen--;
    }

    if (aigov_ieq(name, nlen, "content-length")) {
        if (vlen == 0 || vlen > 18) {
            return aigov_http_fail(r, "invalid Content-Length");
        }

        cl = 0;

        for (k = 0; k < vlen; k++) {
            if (value[k] < '0' || value[k] > '9') {
                return aigov_http_fail(r, "invalid Content-Length");
            }

            cl = cl * 10 + (value[k] - '0');
        }

        if (r->seen_length && cl != r->content_length) {
            return aigov_http_fail(r, "conflicting Content-Length");
        }

        r->seen_length = 1;
        r->content_length = cl;

        return AIGOV_HTTP_AGAIN;
    }

    if (aigov_ieq(name, nlen, "transfer-encoding")) {
        /* the last coding must be chunked; earlier ones encode the body */
        last = value;

        for (k = 0; k < vlen; k++) {
            if (value[k] == ',') {
                last = value + k + 1;
                r->encoded = 1;
            }
        }

        k = vlen - (last - value);

        while (k && (*last == ' ' || *last == '\t')) {
            last++;
            k--;
        }

        if (!aigov_ieq(last, k, "chunked")) {
            return aigov_http_fail(r, "unsupported Transfer-Encoding");
        }

        r->seen_te = 1;
        r->chunked = 1;

        return AIGOV_HTTP_AGAIN;
    }

    if (aigov_ieq(name, nlen, "connection")) {
        /* a list of tokens: "close", "keep-alive", others */
        start = 0;

        for (k = 0; k <= vlen; k++) {
            if (k < vlen && value[k] != ',') {
                continue;
            }

            last = value + start;
            i = k - start;
            start = k + 1;

            while (i && (*last == ' ' || *last == '\t')) {
                last++;
                i--;
            }

            while (i && (last[i - 1] == ' ' || last[i - 1] == '\t')) {
                i--;
            }

            if (aigov_ieq(last, i, "close")) {
                r->conn_close = 1;

            } else if (aigov_ieq(last, i, "keep-alive")) {
                r->conn_keepalive = 1;
            }
        }

        return AIGOV_HTTP_AGAIN;
    }

    if (aigov_ieq(name, nlen, "content-encoding")) {
        if (vlen && !aigov_ieq(value, vlen, "identity")) {
            r->encoded = 1;
        }
    }

    return AIGOV_HTTP_AGAIN;
}


static int
aigov_http_headers_done(aigov_http_resp_t *r)
{
    if (r->status < 200) {
        if (r->status == 101) {
            return aigov_http_fail(r, "unexpected 101 Switching Protocols");
        }

        /* an interim response: the real one follows */
        r->status = 0;
        r->content_length = -1;
        r->seen_length = 0;
        r->seen_te = 0;
        r->chunked = 0;
        r->encoded = 0;
        r->conn_close = 0;
        r->conn_keepalive = 0;
        r->state = AIGOV_HTTP_S_STATUS;

        return AIGOV_HTTP_AGAIN;
    }

    if (r->head || r->status == 204 || r->status == 304) {
        r->state = AIGOV_HTTP_S_DONE;
        return AIGOV_HTTP_DONE;
    }

    if (r->seen_te) {
        r->content_length = -1;
        r->state = AIGOV_HTTP_S_CHUNK_SIZE;
        return AIGOV_HTTP_AGAIN;
    }

    if (r->seen_length) {
        if (r->content_length == 0) {
            r->state = AIGOV_HTTP_S_DONE;
            return AIGOV_HTTP_DONE;
        }

        r->left = (uint64_t) r->content_length;
        r->state = AIGOV_HTTP_S_LENGTH;
        return AIGOV_HTTP_AGAIN;
    }

    r->close_delimited = 1;
    r->state = AIGOV_HTTP_S_CLOSE;

    return AIGOV_HTTP_AGAIN;
}


static int
aigov_http_chunk_size(aigov_http_resp_t *r, const char *s, size_t len)
{
    int       d;
    size_t    i;
    uint64_t  size;

    size = 0;

    for (i = 0; i < len; i++) {
        d = aigov_lower((unsigned char) s[i]);

        if (d >= '0' && d <= '9') {
            d -= '0';

        } else if (d >= 'a' && d <= 'f') {
            d = d - 'a' + 10;

        } else {
            break;
        }

        size = size * 16 + d;

        if (size > AIGOV_HTTP_MAX_CHUNK) {
            return aigov_http_fail(r, "chunk size too large");
        }
    }

    if (i == 0) {
        return aigov_http_fail(r, "invalid chunk size");
    }

    /* chunk extensions (";name=value") are ignored */

    while (i < len && (s[i] == ' ' || s[i] == '\t')) {
        i++;
    }

    if (i < len && s[i] != ';') {
        return aigov_http_fail(r, "invalid chunk size");
    }

    if (size == 0) {
        r->state = AIGOV_HTTP_S_TRAILER;
        return AIGOV_HTTP_AGAIN;
    }

    r->left = size;
    r->state = AIGOV_HTTP_S_CHUNK_DATA;

    return AIGOV_HTTP_AGAIN;
}


/* A complete line (without CR LF) in the current state. */

static int
aigov_http_line(aigov_http_resp_t *r, const char *s, size_t len)
{
    switch (r->state) {

    case AIGOV_HTTP_S_STATUS:
        if (aigov_http_status_line(r, s, len) != AIGOV_OK) {
            return aigov_http_fail(r, "invalid status line");
        }

        r->state = AIGOV_HTTP_S_HEADER;
        return AIGOV_HTTP_AGAIN;

    case AIGOV_HTTP_S_HEADER:
        if (len == 0) {
            return aigov_http_headers_done(r);
        }

        return aigov_http_header_line(r, s, len);

    case AIGOV_HTTP_S_CHUNK_SIZE:
        return aigov_http_chunk_size(r, s, len);

    case AIGOV_HTTP_S_CHUNK_CRLF:
        if (len != 0) {
            return aigov_http_fail(r, "missing CRLF after chunk data");
        }

        r->state = AIGOV_HTTP_S_CHUNK_SIZE;
        return AIGOV_HTTP_AGAIN;

    default: /* AIGOV_HTTP_S_TRAILER */
        if (len == 0) {
            r->state = AIGOV_HTTP_S_DONE;
            return AIGOV_HTTP_DONE;
        }

        return AIGOV_HTTP_AGAIN;
    }
}


void
aigov_http_resp_init(aigov_http_resp_t *r, size_t max_body, int head)
{
    memset(r, 0, offsetof(aigov_http_resp_t, line));

    r->max_body = max_body;
    r->head = head ? 1 : 0;
    r->content_length = -1;
    r->state = AIGOV_HTTP_S_STATUS;
}


static int
aigov_http_feed(aigov_http_resp_t *r, const char *data, size_t len,
    size_t *used)
{
    int          rc;
    size_t       n, llen;
    const char  *p, *end, *nl;

    if (r->state == AIGOV_HTTP_S_DONE) {
        return AIGOV_HTTP_DONE;
    }

    if (r->state == AIGOV_HTTP_S_ERROR) {
        return AIGOV_HTTP_ERROR;
    }

    p = data;
    end = data + len;
    *used = len;

    while (p < end) {

        switch (r->state) {

        case AIGOV_HTTP_S_LENGTH:
        case AIGOV_HTTP_S_CHUNK_DATA:
            n = (size_t) (end - p);

            if ((uint64_t) n > r->left) {
                n = (size_t) r->left;
            }

            if (aigov_http_store(r, p, n) != AIGOV_OK) {
                return aigov_http_fail(r, "out of memory");
            }

            p += n;
            r->left -= n;

            if (r->left == 0) {
                if (r->state == AIGOV_HTTP_S_LENGTH) {
                    r->state = AIGOV_HTTP_S_DONE;
                    *used = (size_t) (p - data);
                    return AIGOV_HTTP_DONE;
                }

                r->state = AIGOV_HTTP_S_CHUNK_CRLF;
            }

            continue;

        case AIGOV_HTTP_S_CLOSE:
            if (aigov_http_store(r, p, (size_t) (end - p)) != AIGOV_OK) {
                return aigov_http_fail(r, "out of memory");
            }

            return AIGOV_HTTP_AGAIN;

        default:
            break;
        }

        /* a line: status, header, chunk size, CRLF after a chunk, trailer */

        nl = memchr(p, '\n', end - p);
        n = (size_t) ((nl ? nl : end) - p);

        if (r->line_len + n > AIGOV_HTTP_MAX_LINE) {
            return aigov_http_fail(r, "line too long");
        }

        if (r->state == AIGOV_HTTP_S_STATUS || r->state == AIGOV_HTTP_S_HEADER
            || r->state == AIGOV_HTTP_S_TRAILER)
        {
            r->header_bytes += n + (nl ? 1 : 0);

            if (r->header_bytes > AIGOV_HTTP_MAX_HEADER) {
                return aigov_http_fail(r, "response header too large");
            }
        }

        memcpy(r->line + r->line_len, p, n);
        r->line_len += n;
        p += n;

        if (nl == NULL) {
            if (r->state == AIGOV_HTTP_S_STATUS && r->line_len >= 5
                && memcmp(r->line, "HTTP/", 5) != 0)
            {
                /* fail early on garbage that never sends a newline */
                return aigov_http_fail(r, "invalid status line");
            }

            return AIGOV_HTTP_AGAIN;
        }

        p++;    /* the LF */

        llen = r->line_len;

        if (llen && r->line[llen - 1] == '\r') {
            llen--;
        }

        r->line_len = 0;

        if (memchr(r->line, '\0', llen) || memchr(r->line, '\r', llen)) {
            return aigov_http_fail(r, "invalid character in a line");
        }

        rc = aigov_http_line(r, r->line, llen);

        if (rc != AIGOV_HTTP_AGAIN) {
            *used = (size_t) (p - data);
            return rc;
        }
    }

    return AIGOV_HTTP_AGAIN;
}


int
aigov_http_resp_feed(aigov_http_resp_t *r, const char *data, size_t len)
{
    int     rc;
    size_t  used;

    if (r->state == AIGOV_HTTP_S_DONE || r->state == AIGOV_HTTP_S_ERROR) {
        /* bytes after the response */
        if (len) {
            r->extra = 1;
        }

        return (r->state == AIGOV_HTTP_S_DONE) ? AIGOV_HTTP_DONE
                                               : AIGOV_HTTP_ERROR;
    }

    rc = aigov_http_feed(r, data, len, &used);

    if (rc == AIGOV_HTTP_DONE && used < len) {
        r->extra = 1;
    }

    return rc;
}


int
aigov_http_resp_keepalive(aigov_http_resp_t *r)
{
    return r->state == AIGOV_HTTP_S_DONE && !r->close_delimited && !r->extra
           && ((r->version == 11 && !r->conn_close)
               || (r->version == 10 && r->conn_keepalive && !r->conn_close));
}


int
aigov_http_resp_eof(aigov_http_resp_t *r)
{
    switch (r->state) {

    case AIGOV_HTTP_S_DONE:
        return AIGOV_HTTP_DONE;

    case AIGOV_HTTP_S_CLOSE:
        r->state = AIGOV_HTTP_S_DONE;
        return AIGOV_HTTP_DONE;

    case AIGOV_HTTP_S_ERROR:
        return AIGOV_HTTP_ERROR;

    case AIGOV_HTTP_S_STATUS:
        if (r->header_bytes == 0 && r->line_len == 0 && r->status == 0) {
            return aigov_http_fail(r, "connection closed without a response");
        }

        /* fall through */

    default:
        return aigov_http_fail(r, "connection closed before the response "
                               "was complete");
    }
}


void
aigov_http_resp_free(aigov_http_resp_t *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
    r->body_cap = 0;
}


/* ---- JSON paths ---------------------------------------------------------- */

static int
aigov_jpath_fail(char *err, size_t errlen, const char *why, size_t at)
{
    if (err && errlen) {
        snprintf(err, errlen, "%s at offset %zu", why, at);
    }

    return AIGOV_ERROR;
}


int
aigov_jpath_parse(const char *s, size_t len, aigov_jpath_t *path,
    char *err, size_t errlen)
{
    char                 q;
    size_t               i, start, digits;
    aigov_jpath_step_t  *st;

    memset(path, 0, sizeof(aigov_jpath_t));

    path->text.data = s;
    path->text.len = len;

    if (len == 0 || s[0] != '$') {
        return aigov_jpath_fail(err, errlen, "a path starts with \"$\"", 0);
    }

    i = 1;

    while (i < len) {

        if (path->n == AIGOV_JPATH_MAX_STEPS) {
            return aigov_jpath_fail(err, errlen, "more than 16 steps", i);
        }

        st = &path->step[path->n];

        if (s[i] == '.') {
            start = ++i;

            while (i < len && !strchr(".[]'\" \t", s[i]) && s[i] != '\0') {
                i++;
            }

            if (i == start) {
                return aigov_jpath_fail(err, errlen, "empty member name", i);
            }

            st->type = AIGOV_JPATH_KEY;
            st->key.data = s + start;
            st->key.len = i - start;
            path->n++;
            continue;
        }

        if (s[i] != '[') {
            return aigov_jpath_fail(err, errlen, "expected \".\" or \"[\"", i);
        }

        i++;

        if (i < len && (s[i] == '\'' || s[i] == '"')) {
            q = s[i];
            start = ++i;

            while (i < len && s[i] != q) {
                i++;
            }

            if (i + 1 >= len || s[i + 1] != ']') {
                return aigov_jpath_fail(err, errlen, "unterminated \"[\"", i);
            }

            st->type = AIGOV_JPATH_KEY;
            st->key.data = s + start;
            st->key.len = i - start;
            path->n++;
            i += 2;
            continue;
        }

        digits = 0;
        st->type = AIGOV_JPATH_INDEX;
        st->index = 0;

        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (++digits > 9) {
                return aigov_jpath_fail(err, errlen, "index too large", i);
            }

            st->index = st->index * 10 + (s[i] - '0');
            i++;
        }

        if (digits == 0 || i >= len || s[i] != ']') {
            return aigov_jpath_fail(err, errlen,
                                    "expected an index or a quoted name "
                                    "and \"]\"", i);
        }

        path->n++;
        i++;
    }

    return AIGOV_OK;
}


json_t *
aigov_jpath_get(json_t *root, const aigov_jpath_t *path)
{
    size_t                     i;
    json_t                    *v;
    const aigov_jpath_step_t  *st;

    v = root;

    for (i = 0; v && i < path->n; i++) {
        st = &path->step[i];

        if (st->type == AIGOV_JPATH_INDEX) {
            v = json_is_array(v) ? json_array_get(v, st->index) : NULL;

        } else {
            v = json_is_object(v)
                ? json_object_getn(v, st->key.data, st->key.len) : NULL;
        }
    }

    return v;
}


static int
aigov_json_agree_depth(json_t *a, json_t *b, double tol, int depth)
{
    double       x, y, m;
    size_t       i, klen;
    json_t      *va;
    const char  *key;

    if (a == NULL || b == NULL) {
        return a == b;
    }

    if (depth > AIGOV_JSON_MAX_DEPTH) {
        return 0;
    }

    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            if (json_integer_value(a) == json_integer_value(b)) {
                return 1;
            }

            if (tol == 0) {
                return 0;
            }
        }

        x = json_number_value(a);
        y = json_number_value(b);

        m = 1;
        if (fabs(x) > m) {
            m = fabs(x);
        }
        if (fabs(y) > m) {
            m = fabs(y);
        }

        return fabs(x - y) <= tol * m;
    }

    if (json_typeof(a) != json_typeof(b)) {
        return 0;
    }

    switch (json_typeof(a)) {

    case JSON_OBJECT:
        if (json_object_size(a) != json_object_size(b)) {
            return 0;
        }

        json_object_keylen_foreach(a, key, klen, va) {
            if (!aigov_json_agree_depth(va, json_object_getn(b, key, klen),
                                        tol, depth + 1))
            {
                return 0;
            }
        }

        return 1;

    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) {
            return 0;
        }

        for (i = 0; i < json_array_size(a); i++) {
            if (!aigov_json_agree_depth(json_array_get(a, i),
                                        json_array_get(b, i), tol, depth + 1))
            {
                return 0;
            }
        }

        return 1;

    default:
        return json_equal(a, b);
    }
}


int
aigov_json_agree(json_t *a, json_t *b, double tolerance)
{
    return aigov_json_agree_depth(a, b, tolerance, 0);
}


int
aigov_parse_tolerance(const char *s, size_t len, double *out)
{
    char    buf[64], *end;
    size_t  i;
    double  v;

    if (len == 0 || len >= sizeof(buf)) {
        return AIGOV_ERROR;
    }

    for (i = 0; i < len; i++) {
        if (!strchr("0123456789.eE+-", s[i]) || s[i] == '\0') {
            return AIGOV_ERROR;
        }
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    errno = 0;
    v = strtod(buf, &end);

    if (end != buf + len || errno || !isfinite(v) || v < 0) {
        return AIGOV_ERROR;
    }

    *out = v;

    return AIGOV_OK;
}
