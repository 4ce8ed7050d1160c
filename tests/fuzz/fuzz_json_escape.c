/*
 * libFuzzer target: aigov_json_escape() / aigov_json_escape_len() on
 * arbitrary bytes.
 *
 * Invariants: the escaper writes exactly escape_len bytes (a heap buffer of
 * that size, so ASan catches overruns); the output has no raw control
 * character, DEL, or unescaped quote; and when the input is valid UTF-8,
 * the quoted output decodes with jansson back to the input.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "aigov_core.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char    *s = (const char *) data;
    size_t         need, n, i;
    char          *out;
    json_t        *j;
    json_error_t   jerr;
    unsigned char  c;

    need = aigov_json_escape_len(s, size);
    if (need < size || need > size * 6) {
        abort();
    }

    /* room for the surrounding quotes; the escaper writes at out + 1 */
    out = malloc(need + 2);
    if (out == NULL) {
        return 0;
    }

    n = aigov_json_escape(out + 1, s, size);
    if (n != need) {
        abort();
    }

    for (i = 1; i <= n; i++) {
        c = (unsigned char) out[i];

        if (c < 0x20 || c == 0x7f) {
            abort();
        }

        if (c == '\\') {
            i++;            /* the escaped character */
            if (i > n) {
                abort();
            }
            continue;
        }

        if (c == '"') {
            abort();
        }
    }

    out[0] = '"';
    out[n + 1] = '"';

    j = json_loadb(out, n + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);

    if (j != NULL) {
        if (!json_is_string(j) || json_string_length(j) != size
            || memcmp(json_string_value(j), s, size) != 0)
        {
            abort();
        }
        json_decref(j);

    } else if (jerr.text[0] == '\0') {
        abort();
    }

    /*
     * jansson refuses the string only for invalid UTF-8, which the
     * escaper passes through as is: check that this is the case.
     */
    if (j == NULL) {
        j = json_stringn(s, size);
        if (j != NULL) {
            abort();            /* valid UTF-8, yet the escape broke it */
        }
    }

    free(out);

    return 0;
}
