/*
 * libFuzzer target: aigov_json_model() on arbitrary bytes.
 *
 * Invariants: on AIGOV_JSON_OK the root is a non-NULL object, the model is
 * a valid name (aigov_valid_name) and is the "model" string of that root
 * (not a pointer into the input); the root is freed here, so LeakSanitizer
 * catches a leak on either path.  On error the root is NULL, the model is
 * cleared and the message is non-empty and NUL terminated.
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
    json_t       *root, *m;
    aigov_str_t   model;
    char          err[96];
    int           rc;

    memset(err, 'X', sizeof(err));

    rc = aigov_json_model((const char *) data, size, &root, &model, err,
                          sizeof(err));

    switch (rc) {

    case AIGOV_JSON_OK:
        if (root == NULL || !json_is_object(root)
            || !aigov_valid_name(model.data, model.len))
        {
            abort();
        }

        m = json_object_get(root, "model");
        if (m == NULL || json_string_value(m) != model.data
            || json_string_length(m) != model.len)
        {
            abort();
        }

        if (size && model.data >= (const char *) data
            && model.data < (const char *) data + size)
        {
            abort();
        }

        json_decref(root);
        break;

    case AIGOV_JSON_MALFORMED:
    case AIGOV_JSON_NOT_OBJECT:
    case AIGOV_JSON_NO_MODEL:
    case AIGOV_JSON_BAD_MODEL:
        if (root != NULL || model.data != NULL || model.len != 0
            || memchr(err, '\0', sizeof(err)) == NULL || err[0] == '\0')
        {
            abort();
        }
        break;

    default:
        abort();
    }

    return 0;
}
