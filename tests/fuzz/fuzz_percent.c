/*
 * libFuzzer target: aigov_parse_percent() on arbitrary bytes.
 *
 * Invariants: on OK the value is <= AIGOV_WEIGHT_SCALE; the input is
 * digits with at most one '.', at most two decimals and a final '%'; the
 * value equals what strtod() reads times 100; and aigov_format_percent()
 * plus '%' parses back to the same value.  On error *out is untouched.
 */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_core.h"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *s = (const char *) data;
    char         num[32], buf[16];
    uint32_t     value, again;
    size_t       i, n;
    double       d;

    value = 0xdeadbeef;

    if (aigov_parse_percent(s, size, &value) != AIGOV_OK) {
        if (value != 0xdeadbeef) {
            abort();
        }
        return 0;
    }

    if (value > AIGOV_WEIGHT_SCALE || size < 2 || s[size - 1] != '%'
        || size - 1 >= sizeof(num))
    {
        abort();
    }

    for (i = 0; i < size - 1; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || s[i] == '.')) {
            abort();
        }
    }

    /* compare with an independent reading of the number */
    memcpy(num, s, size - 1);
    num[size - 1] = '\0';
    d = strtod(num, NULL);
    if (llround(d * 100.0) != (long long) value) {
        abort();
    }

    /* round trip through the formatter */
    memset(buf, 'X', sizeof(buf));
    n = aigov_format_percent(value, buf);
    if (n == 0 || n > 7 || buf[n] != '\0' || strlen(buf) != n
        || buf[8] != 'X')
    {
        abort();
    }

    buf[n] = '%';
    again = 0xdeadbeef;
    if (aigov_parse_percent(buf, n + 1, &again) != AIGOV_OK
        || again != value)
    {
        abort();
    }

    return 0;
}
