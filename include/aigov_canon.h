/*
 * ngx_aigov: canonical JSON, for cache keys.  Pure C (libc only), no
 * nginx: unit tested in tests/test_canon.c, fuzzed by
 * tests/fuzz/fuzz_canon.c.
 *
 * Two JSON texts that mean the same document give the same bytes:
 *
 *   - Whitespace between tokens (space, tab, LF, CR) is dropped.
 *   - Object members are sorted by key, comparing the keys' UTF-8 bytes
 *     (that is, Unicode code point order; RFC 8785 sorts by UTF-16 code
 *     units, which differs only between U+E000..U+FFFF and astral keys).
 *     A key that occurs twice in one object (after unescaping) makes the
 *     text invalid: which one a model server would use is undefined.
 *   - Strings are unescaped and written back with the fewest escapes:
 *     \" \\ \b \f \n \r \t, \u00xx (lower-case hex) for the other
 *     controls below U+0020, everything else as raw UTF-8 ("\u00e9" and
 *     "é" agree, so do "\/" and "/").  Invalid UTF-8 (overlong forms,
 *     surrogates, above U+10FFFF) and lone \ud800-style surrogate escapes
 *     make the text invalid.
 *   - Numbers are compared as exact decimals, never through a binary
 *     double: 1, 1.0, 1e0, 10e-1 and 0.1E1 agree; 0.1 and
 *     0.1000000000000000055511151231257827 do not (as doubles they would),
 *     and neither do two integers above 2^53 that differ in the last
 *     digit.  There is no separate integer type: 2 and 2.0 agree.  Zero
 *     has one form whatever its sign or exponent: -0, 0.0 and 0e5 are
 *     "0".  A number is written as its significant digits d1..dn (no
 *     leading or trailing zeros) and the position k of the decimal point
 *     (value = 0.d1..dn x 10^k), in the layout of ECMAScript's
 *     Number::toString (which RFC 8785 uses):
 *
 *         n <= k <= 21       digits, then k - n zeros       100, 123
 *         0 < k <= 21        d1..dk "." dk+1..dn            12.5
 *         -6 < k <= 0        "0." -k zeros, then digits     0.000125
 *         otherwise          d1 ["." d2..dn] "e" sign k-1   1e+21, 1.5e-7
 *
 *     with a leading "-" for negatives.  A number whose exponent k - 1
 *     is beyond +-999999999 is refused (AIGOV_CANON_RANGE) rather than
 *     approximated.
 *   - true, false and null are written as such.  Any JSON value may be
 *     the root (RFC 8259); nothing but whitespace may follow it.
 *
 * Nesting deeper than AIGOV_CANON_MAX_DEPTH is refused.  Memory: a small
 * arena on the stack, then malloc() blocks freed before returning; the
 * output goes to a caller's write function in pieces of up to 4 KiB, so a
 * caller hashing it never holds the canonical text whole.
 */

#ifndef AIGOV_CANON_H_INCLUDED_
#define AIGOV_CANON_H_INCLUDED_


#include <stddef.h>


#define AIGOV_CANON_OK          0
#define AIGOV_CANON_INVALID    -1    /* not JSON, or JSON refused above */
#define AIGOV_CANON_TOO_DEEP   -2
#define AIGOV_CANON_RANGE      -3    /* a number's exponent */
#define AIGOV_CANON_NOMEM      -4

#define AIGOV_CANON_MAX_DEPTH   128


typedef void (*aigov_canon_write_pt)(void *data, const char *p, size_t len);


/*
 * Canonicalises the JSON text in[0..len) and passes the result to write()
 * (NULL: only validate).  write() is called only once the whole text has
 * been parsed and found valid: on an error nothing was written.  err (may
 * be NULL) receives a NUL-terminated reason with the byte offset, e.g.
 * "invalid JSON at byte 7: expected ':'".
 */
int aigov_canon(const char *in, size_t len, aigov_canon_write_pt write,
    void *data, char *err, size_t err_size);

/*
 * The canonical text in a malloc()ed, NUL-terminated string (free() it),
 * or NULL with *rc set (rc may be NULL).
 */
char *aigov_canon_dup(const char *in, size_t len, size_t *out_len, int *rc,
    char *err, size_t err_size);


#endif /* AIGOV_CANON_H_INCLUDED_ */
