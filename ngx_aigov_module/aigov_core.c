/*
 * ngx_aigov: pure decision logic (see include/aigov_core.h).
 * No nginx headers here: tests/ links this file on its own.
 */

#include <string.h>
#include <stdio.h>
#include <jansson.h>

#include "aigov_core.h"


int
aigov_parse_percent(const char *s, size_t len, uint32_t *out)
{
    size_t    i;
    uint32_t  value, decimals;
    int       dot, digits;

    if (len < 2 || s[len - 1] != '%') {
        return AIGOV_ERROR;
    }

    len--;
    value = 0;
    decimals = 0;
    dot = 0;
    digits = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (dot) {
                return AIGOV_ERROR;
            }
            dot = 1;
            continue;
        }

        if (s[i] < '0' || s[i] > '9') {
            return AIGOV_ERROR;
        }

        if (dot && ++decimals > 2) {
            return AIGOV_ERROR;
        }

        if (++digits > 5) {
            /* 100.00 is the largest value: never more than 5 digits */
            return AIGOV_ERROR;
        }

        value = value * 10 + (uint32_t) (s[i] - '0');
    }

    if (digits == 0 || (dot && decimals == 0)) {
        return AIGOV_ERROR;
    }

    while (decimals++ < 2) {
        value *= 10;
    }

    if (value > AIGOV_WEIGHT_SCALE) {
        return AIGOV_ERROR;
    }

    *out = value;

    return AIGOV_OK;
}


size_t
aigov_format_percent(uint32_t weight, char *buf)
{
    int  n;

    if (weight % 100 == 0) {
        n = snprintf(buf, 8, "%u", (unsigned) (weight / 100));

    } else {
        n = snprintf(buf, 8, "%u.%02u", (unsigned) (weight / 100),
                     (unsigned) (weight % 100));
    }

    if (n < 0) {
        return 0;
    }

    /* weights above 100 % do not fit: report what was written */
    return ((size_t) n < 8) ? (size_t) n : 7;
}


AIGOV_HOT
uint32_t
aigov_hash32(const void *data, size_t len, uint32_t seed)
{
    const unsigned char  *p;
    uint32_t              h, k;

    p = data;
    h = seed ^ (uint32_t) len;

    while (len >= 4) {
        k  = p[0];
        k |= (uint32_t) p[1] << 8;
        k |= (uint32_t) p[2] << 16;
        k |= (uint32_t) p[3] << 24;

        k *= 0x5bd1e995;
        k ^= k >> 24;
        k *= 0x5bd1e995;

        h *= 0x5bd1e995;
        h ^= k;

        p += 4;
        len -= 4;
    }

    switch (len) {
    case 3:
        h ^= (uint32_t) p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t) p[1] << 8;
        /* fall through */
    case 1:
        h ^= p[0];
        h *= 0x5bd1e995;
    }

    h ^= h >> 13;
    h *= 0x5bd1e995;
    h ^= h >> 15;

    return h;
}


AIGOV_HOT
uint32_t
aigov_bucket(uint32_t hash)
{
    return (uint32_t) (((uint64_t) hash * AIGOV_WEIGHT_SCALE) >> 32);
}


AIGOV_HOT
uint32_t
aigov_sticky_bucket(const char *model, size_t model_len, const char *key,
    size_t key_len)
{
    uint32_t  seed;

    seed = aigov_hash32(model, model_len, 0x61696776);  /* "aigv" */

    return aigov_bucket(aigov_hash32(key, key_len, seed));
}


AIGOV_HOT
int
aigov_pick(const uint32_t *weights, size_t n, uint32_t bucket)
{
    size_t    i;
    uint32_t  cut;

    cut = 0;

    for (i = 0; i < n; i++) {
        cut += weights[i];

        if (bucket < cut) {
            return (int) i;
        }
    }

    return -1;
}


uint32_t
aigov_weights_sum(const uint32_t *weights, size_t n)
{
    size_t    i;
    uint64_t  sum;

    sum = 0;

    for (i = 0; i < n; i++) {
        sum += weights[i];
    }

    return (sum > UINT32_MAX) ? UINT32_MAX : (uint32_t) sum;
}


static int
aigov_eq_nocase(const char *a, size_t len, const char *lit)
{
    size_t  i;
    char    c;

    if (strlen(lit) != len) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = a[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char) (c | 0x20);
        }
        if (c != lit[i]) {
            return 0;
        }
    }

    return 1;
}


int
aigov_override_value(const char *v, size_t len)
{
    if (aigov_eq_nocase(v, len, "always")) {
        return AIGOV_OVERRIDE_ALWAYS;
    }

    if (aigov_eq_nocase(v, len, "never")) {
        return AIGOV_OVERRIDE_NEVER;
    }

    return AIGOV_OVERRIDE_NONE;
}


int
aigov_truthy(const char *v, size_t len)
{
    if (len == 0
        || aigov_eq_nocase(v, len, "0")
        || aigov_eq_nocase(v, len, "false")
        || aigov_eq_nocase(v, len, "never")
        || aigov_eq_nocase(v, len, "off")
        || aigov_eq_nocase(v, len, "no"))
    {
        return 0;
    }

    return 1;
}


int
aigov_valid_name(const char *s, size_t len)
{
    size_t  i;
    char    c;

    if (len == 0 || len > 128) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9')
            || c == '.' || c == '_' || c == '-' || c == ':')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


int
aigov_kserve_path(const char *uri, size_t len, aigov_str_t *model,
    aigov_str_t *version)
{
    static const char  prefix[] = "/v2/models/";
    static const char  vers[] = "versions/";
    const char        *p, *end, *seg;

    model->data = NULL;
    model->len = 0;
    version->data = NULL;
    version->len = 0;

    if (len < sizeof(prefix) - 1
        || memcmp(uri, prefix, sizeof(prefix) - 1) != 0)
    {
        return AIGOV_DECLINED;
    }

    p = uri + sizeof(prefix) - 1;
    end = uri + len;

    seg = p;
    while (p < end && *p != '/') {
        p++;
    }

    if (!aigov_valid_name(seg, (size_t) (p - seg))) {
        return AIGOV_ERROR;
    }

    model->data = seg;
    model->len = (size_t) (p - seg);

    if (p == end) {
        return AIGOV_OK;
    }

    p++;  /* '/' */

    if ((size_t) (end - p) >= sizeof(vers) - 1
        && memcmp(p, vers, sizeof(vers) - 1) == 0)
    {
        p += sizeof(vers) - 1;
        seg = p;

        while (p < end && *p != '/') {
            p++;
        }

        if (!aigov_valid_name(seg, (size_t) (p - seg))) {
            return AIGOV_ERROR;
        }

        version->data = seg;
        version->len = (size_t) (p - seg);
    }

    return AIGOV_OK;
}


static void
aigov_set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "%s", msg);
    }
}


int
aigov_json_model(const char *body, size_t len, struct json_t **root,
    aigov_str_t *model, char *err, size_t errlen)
{
    json_t        *doc, *m;
    json_error_t   jerr;
    const char    *s;
    size_t         n;

    *root = NULL;
    model->data = NULL;
    model->len = 0;

    if (len == 0) {
        aigov_set_err(err, errlen, "the request body is empty");
        return AIGOV_JSON_MALFORMED;
    }

    doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                     &jerr);
    if (doc == NULL) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "invalid JSON at byte %d: %s",
                     jerr.position, jerr.text);
        }
        return AIGOV_JSON_MALFORMED;
    }

    if (!json_is_object(doc)) {
        json_decref(doc);
        aigov_set_err(err, errlen, "the request body is not a JSON object");
        return AIGOV_JSON_NOT_OBJECT;
    }

    m = json_object_get(doc, "model");
    if (m == NULL) {
        json_decref(doc);
        aigov_set_err(err, errlen, "the request body has no \"model\" field");
        return AIGOV_JSON_NO_MODEL;
    }

    if (!json_is_string(m)) {
        json_decref(doc);
        aigov_set_err(err, errlen, "the \"model\" field is not a string");
        return AIGOV_JSON_BAD_MODEL;
    }

    s = json_string_value(m);
    n = json_string_length(m);

    if (!aigov_valid_name(s, n)) {
        json_decref(doc);
        aigov_set_err(err, errlen,
                      "the \"model\" field is not a valid model name");
        return AIGOV_JSON_BAD_MODEL;
    }

    model->data = s;
    model->len = n;
    *root = doc;

    return AIGOV_JSON_OK;
}


size_t
aigov_json_escape_len(const char *s, size_t len)
{
    size_t         i, n;
    unsigned char  c;

    n = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t') {
            n += 2;

        } else if (c < 0x20 || c == 0x7f) {
            n += 6;

        } else {
            n++;
        }
    }

    return n;
}


size_t
aigov_json_escape_char(unsigned char c, char *esc)
{
    static const char  hex[] = "0123456789abcdef";

    esc[0] = '\\';

    switch (c) {
    case '"':  esc[1] = '"';  return 2;
    case '\\': esc[1] = '\\'; return 2;
    case '\b': esc[1] = 'b';  return 2;
    case '\f': esc[1] = 'f';  return 2;
    case '\n': esc[1] = 'n';  return 2;
    case '\r': esc[1] = 'r';  return 2;
    case '\t': esc[1] = 't';  return 2;
    default:
        esc[1] = 'u';
        esc[2] = '0';
        esc[3] = '0';
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 0xf];
        return 6;
    }
}


size_t
aigov_json_escape(char *dst, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    size_t             i;
    char              *p;
    unsigned char      c;

    p = dst;

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        switch (c) {
        case '"':  *p++ = '\\'; *p++ = '"';  break;
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\n': *p++ = '\\'; *p++ = 'n';  break;
        case '\r': *p++ = '\\'; *p++ = 'r';  break;
        case '\t': *p++ = '\\'; *p++ = 't';  break;
        default:
            if (c < 0x20 || c == 0x7f) {
                *p++ = '\\'; *p++ = 'u'; *p++ = '0'; *p++ = '0';
                *p++ = hex[c >> 4];
                *p++ = hex[c & 0xf];

            } else {
                *p++ = (char) c;
            }
        }
    }

    return (size_t) (p - dst);
}
