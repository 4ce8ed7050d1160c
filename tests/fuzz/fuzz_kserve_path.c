/*
 * libFuzzer target: aigov_kserve_path() on arbitrary bytes.
 *
 * Invariants: DECLINED exactly when the input does not start with
 * "/v2/models/"; on OK the model slice starts right after that prefix, and
 * model and version (when present) lie inside the input and pass
 * aigov_valid_name(); an absent version is { NULL, 0 }.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aigov_core.h"


#define PREFIX      "/v2/models/"
#define PREFIX_LEN  (sizeof(PREFIX) - 1)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
inside(const char *base, size_t size, aigov_str_t s)
{
    return s.data >= base && s.len <= size
           && (size_t) (s.data - base) <= size - s.len;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char   *uri = (const char *) data;
    aigov_str_t   model, version;
    int           rc, v2;

    rc = aigov_kserve_path(uri, size, &model, &version);

    v2 = size >= PREFIX_LEN && memcmp(uri, PREFIX, PREFIX_LEN) == 0;

    switch (rc) {

    case AIGOV_OK:
        if (!v2
            || model.data != uri + PREFIX_LEN
            || !inside(uri, size, model)
            || !aigov_valid_name(model.data, model.len))
        {
            abort();
        }

        if (version.len == 0) {
            if (version.data != NULL) {
                abort();
            }

        } else if (!inside(uri, size, version)
                   || !aigov_valid_name(version.data, version.len)
                   || version.data < model.data + model.len)
        {
            abort();
        }
        break;

    case AIGOV_DECLINED:
        if (v2) {
            abort();
        }
        break;

    case AIGOV_ERROR:
        if (!v2) {
            abort();
        }
        break;

    default:
        abort();
    }

    return 0;
}
