/*
 * ngx_aigov: pure decision logic, free of nginx.
 *
 * Everything here works on plain buffers and integers so that it can be
 * unit tested and fuzzed without an nginx build (tests/).  The nginx glue
 * in ngx_aigov_module/ owns memory, locking and I/O and calls into this.
 */

#ifndef AIGOV_CORE_H_INCLUDED_
#define AIGOV_CORE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* Weights are fixed point with 0.01 % resolution: 10000 == 100 %. */
#define AIGOV_WEIGHT_SCALE      10000

/*
 * On the functions every request runs: GCC and clang put them together
 * (.text.hot), so a request's code spans a few pages, not dozens.  Each
 * page is a TLB entry to refill after a system call on kernels that flush
 * the TLB then (page table isolation without PCID).
 */
#if (defined __GNUC__ || defined __clang__)
#define AIGOV_HOT               __attribute__((hot))
#else
#define AIGOV_HOT
#endif

/*
 * A hint that *p is about to be read: the load starts now and the code
 * goes on; no fault whatever p is.
 */
#if (defined __GNUC__ || defined __clang__)
#define aigov_prefetch(p)       __builtin_prefetch(p)
#else
#define aigov_prefetch(p)
#endif

#define AIGOV_OK                0
#define AIGOV_ERROR             -1
#define AIGOV_DECLINED          -2


typedef struct {
    const char  *data;
    size_t       len;
} aigov_str_t;


/*
 * "5%", "0.01%", "12.5%", "100%" -> 500, 1, 1250, 10000.
 * At most two decimals, the '%' sign is required, the value must be
 * within 0..100 %.  Returns AIGOV_OK or AIGOV_ERROR.
 */
int aigov_parse_percent(const char *s, size_t len, uint32_t *out);

/* Formats a weight back as "5.25": buf must hold 8 bytes; returns length. */
size_t aigov_format_percent(uint32_t weight, char *buf);

/*
 * MurmurHash2, 32 bit, with an explicit seed.  Stable across platforms
 * of the same endianness, nodes and reloads: sticky routing depends on it.
 */
uint32_t aigov_hash32(const void *data, size_t len, uint32_t seed);

/* Maps a hash onto a bucket 0..AIGOV_WEIGHT_SCALE-1 without modulo bias. */
uint32_t aigov_bucket(uint32_t hash);

/*
 * Sticky bucket of a key within a model: the model name seeds the hash, so
 * a user who is a canary for one model is not automatically one for all.
 */
uint32_t aigov_sticky_bucket(const char *model, size_t model_len,
    const char *key, size_t key_len);

/*
 * Cut points: candidates own consecutive ranges of buckets in declaration
 * order, [0, w0), [w0, w0 + w1), ...; the rest belongs to the base variant.
 * Returns the candidate index, or -1 for the base variant.
 * The caller guarantees sum(weights) <= AIGOV_WEIGHT_SCALE.
 */
int aigov_pick(const uint32_t *weights, size_t n, uint32_t bucket);

/* Sum of weights, saturating; used to reject configs over 100 %. */
uint32_t aigov_weights_sum(const uint32_t *weights, size_t n);


/* Header / cookie override values, the ingress-nginx convention. */
#define AIGOV_OVERRIDE_NONE     0
#define AIGOV_OVERRIDE_ALWAYS   1
#define AIGOV_OVERRIDE_NEVER    2

/* "always" -> ALWAYS, "never" -> NEVER, anything else -> NONE (exact). */
int aigov_override_value(const char *v, size_t len);

/* Truthy preview header: present, not empty, not "0", "false", "never". */
int aigov_truthy(const char *v, size_t len);


/*
 * KServe v2 / Open Inference Protocol model path:
 *   /v2/models/{name}[/versions/{version}][/infer|/ready|...]
 * Sets model (and version, len 0 when absent).  Returns AIGOV_OK,
 * AIGOV_DECLINED when the path is not a v2 model path, AIGOV_ERROR when it
 * is one but malformed (empty name, empty version, bad characters).
 */
int aigov_kserve_path(const char *uri, size_t len, aigov_str_t *model,
    aigov_str_t *version);

/* Model and version names: 1..128 of [A-Za-z0-9._:-]. */
int aigov_valid_name(const char *s, size_t len);


/* Result of reading the OpenAI "model" field of a request body. */
#define AIGOV_JSON_OK           0
#define AIGOV_JSON_MALFORMED    1   /* not JSON, truncated, trailing junk */
#define AIGOV_JSON_NOT_OBJECT   2
#define AIGOV_JSON_NO_MODEL     3
#define AIGOV_JSON_BAD_MODEL    4   /* not a string, empty, bad characters */

/*
 * Parses body as one JSON document (jansson) and finds "model".  On
 * AIGOV_JSON_OK, *root holds the parsed document (the caller owns it and
 * must json_decref() it) and model points into it.  On error, err (which
 * may be NULL) receives a short human readable reason, NUL terminated.
 */
struct json_t;
int aigov_json_model(const char *body, size_t len, struct json_t **root,
    aigov_str_t *model, char *err, size_t errlen);


/*
 * Appends s to dst as the inside of a JSON string (no quotes), escaping
 * quotes, backslashes and control characters.  dst must hold
 * aigov_json_escape_len(s) bytes; returns the number of bytes written.
 */
size_t aigov_json_escape_len(const char *s, size_t len);
size_t aigov_json_escape(char *dst, const char *s, size_t len);

/*
 * The JSON escape of one byte that must be escaped (a quote, a backslash
 * or a control character), in the short forms where JSON has one (\b \f
 * \n \r \t, as RFC 8785 wants) and \u00XX else; esc holds 6 bytes.
 * Returns its length, 2 or 6.
 */
size_t aigov_json_escape_char(unsigned char c, char *esc);


#endif /* AIGOV_CORE_H_INCLUDED_ */
