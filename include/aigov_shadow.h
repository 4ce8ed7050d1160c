/*
 * ngx_aigov shadow traffic: the pure parts, free of nginx.
 *
 *   - an incremental HTTP/1.x response reader (status line, headers,
 *     Content-Length / chunked / close-delimited bodies) that keeps at most
 *     max_body bytes of the body and counts the rest;
 *   - JSON paths ("$.choices[0].message.content") parsed once at load time
 *     into steps that point into the source text;
 *   - agreement of two JSON values with a numeric tolerance.
 *
 * The nginx glue (plugins/ngx_aigov_shadow.c) owns sockets, timers and
 * memory and calls into this; tests/test_shadow.c and the fuzz targets
 * exercise it without nginx.
 */

#ifndef AIGOV_SHADOW_H_INCLUDED_
#define AIGOV_SHADOW_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "aigov_core.h"


/* ---- HTTP/1.x response reader ------------------------------------------ */

#define AIGOV_HTTP_AGAIN        0    /* give me more bytes */
#define AIGOV_HTTP_DONE         1    /* a whole response was read */
#define AIGOV_HTTP_ERROR        -1   /* not HTTP, or broken framing */

#define AIGOV_HTTP_MAX_LINE     8192 /* one status or header line */
#define AIGOV_HTTP_MAX_HEADER   65536 /* all header lines together */


typedef struct {
    size_t        max_body;      /* body bytes kept; the rest is counted */
    unsigned      head:1;        /* the request was HEAD: no body */

    /* results */
    int           status;        /* 100..999 once the status line is read */
    int           version;       /* 10 or 11: HTTP/1.0, HTTP/1.1 */
    int64_t       content_length;    /* -1: none */
    unsigned      chunked:1;
    unsigned      encoded:1;     /* Content-Encoding other than identity */
    unsigned      truncated:1;   /* the body was longer than max_body */
    unsigned      conn_close:1;  /* "Connection: close" */
    unsigned      conn_keepalive:1;  /* "Connection: keep-alive" */
    unsigned      extra:1;       /* bytes came after the response */
    char         *body;          /* malloc()ed, body_len bytes kept */
    size_t        body_len;
    uint64_t      body_total;    /* body bytes seen */
    const char   *error;         /* static text when AIGOV_HTTP_ERROR */

    /* private */
    int           state;
    size_t        line_len;
    size_t        header_bytes;
    uint64_t      left;          /* of the body or of the current chunk */
    unsigned      seen_length:1;
    unsigned      seen_te:1;
    unsigned      close_delimited:1;
    size_t        body_cap;
    char          line[AIGOV_HTTP_MAX_LINE];
} aigov_http_resp_t;


/* Prepares r for a response; head: the request was HEAD (no body). */
void aigov_http_resp_init(aigov_http_resp_t *r, size_t max_body, int head);

/*
 * Feeds len bytes.  Returns AIGOV_HTTP_AGAIN, AIGOV_HTTP_DONE (bytes after
 * the response are ignored) or AIGOV_HTTP_ERROR (r->error says why; also
 * when the body cannot be stored for lack of memory).  Interim 1xx
 * responses are skipped.  Once DONE or ERROR, further feeds return the same.
 */
int aigov_http_resp_feed(aigov_http_resp_t *r, const char *data, size_t len);

/*
 * After DONE: may the connection carry another request?  HTTP/1.1 without
 * "Connection: close" (HTTP/1.0 with "keep-alive"), a body framed by its
 * length or chunks, and nothing received after the response.
 */
int aigov_http_resp_keepalive(aigov_http_resp_t *r);

/* The peer closed the connection: DONE for a close-delimited body. */
int aigov_http_resp_eof(aigov_http_resp_t *r);

/* Frees the body buffer (init again to reuse r). */
void aigov_http_resp_free(aigov_http_resp_t *r);


/* ---- JSON paths ---------------------------------------------------------- */

#define AIGOV_JPATH_MAX_STEPS   16

#define AIGOV_JPATH_KEY         0
#define AIGOV_JPATH_INDEX       1

typedef struct {
    int           type;
    aigov_str_t   key;           /* points into the parsed text */
    size_t        index;
} aigov_jpath_step_t;

typedef struct {
    aigov_str_t         text;    /* the whole path as written */
    size_t              n;
    aigov_jpath_step_t  step[AIGOV_JPATH_MAX_STEPS];
} aigov_jpath_t;

/*
 * "$", "$.a.b", "$.choices[0].message.content", "$['odd.key'][2]".
 * A member name after '.' is 1 or more bytes other than . [ ] ' " and
 * whitespace; in brackets it is quoted with ' or " and may hold anything
 * but its quote.  Indexes are decimal, at most 9 digits.  The steps point
 * into s, which must outlive the path.  Returns AIGOV_OK, or AIGOV_ERROR
 * with a reason in err (NUL terminated, may be NULL).
 */
int aigov_jpath_parse(const char *s, size_t len, aigov_jpath_t *path,
    char *err, size_t errlen);

struct json_t;

/* The value at path, or NULL when it does not exist (borrowed). */
struct json_t *aigov_jpath_get(struct json_t *root, const aigov_jpath_t *path);

/*
 * Do two JSON values agree?  Numbers (integer or real) agree when
 * |a - b| <= tolerance * max(1, |a|, |b|): absolute for small values,
 * relative for large ones; tolerance 0 means equal.  Objects agree when
 * they have the same members and each agrees; arrays when they have the
 * same length and each element agrees; everything else must be equal.
 * Two missing values (NULL) agree; one missing does not.  Nesting deeper
 * than 64 levels does not agree.
 */
int aigov_json_agree(struct json_t *a, struct json_t *b, double tolerance);

/*
 * "0.01", "0", "1e-3", ".5": a finite, non-negative tolerance.  Returns
 * AIGOV_OK or AIGOV_ERROR.
 */
int aigov_parse_tolerance(const char *s, size_t len, double *out);


#endif /* AIGOV_SHADOW_H_INCLUDED_ */
