/*
 * ngx_aigov: client versions, version ranges and JSON response adaptation
 * for old clients, free of nginx (tests/test_version.c).
 *
 * Plain structs and caller buffers; jansson for the JSON part.  The nginx
 * glue (plugins/ngx_aigov_skew.c) owns memory, I/O and the policy.
 *
 *
 * VERSIONS
 *
 *   [v]MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]
 *
 *   "1", "1.2", "1.2.3", "v2.0.1", "1.4.0-rc.1", "2.0+build.7".  An
 *   optional leading "v" or "V".  Numbers are 1..9 digits each (leading
 *   zeros are allowed and mean nothing: "2024.01.15" is 2024.1.15).
 *   A missing MINOR or PATCH is 0 when versions are compared ("1.2" is
 *   1.2.0).  PRERELEASE and BUILD are dot-separated identifiers of
 *   A-Z a-z 0-9 and "-", none empty.  BUILD is ignored.  At most
 *   AIGOV_VERSION_MAX_LEN bytes; nothing else (no spaces, no "1.x": the
 *   wildcards are for ranges only).
 *
 *   Order: SemVer 2.0 precedence.  Numbers first; then a pre-release sorts
 *   before its release (1.2.3-rc.1 < 1.2.3); pre-releases compare
 *   identifier by identifier, numeric ones numerically and before
 *   alphanumeric ones (ASCII order), a shorter list first when all else is
 *   equal (1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta < 1.0.0-beta.2 <
 *   1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0).
 *
 *
 * RANGES (a subset of npm's node-semver syntax)
 *
 *   RANGE = SET [ "||" SET ]...        any SET matches
 *   SET   = COMPARATOR [ SEP COMPARATOR ]...   all must match
 *   SEP   = spaces and/or a comma      ">=1.0 <2.0", ">=1.0, <2.0"
 *
 *   COMPARATOR          meaning (V with missing parts covers them all)
 *   >=1.2               >=1.2.0
 *   >1.2.3  >1.2  >1    >1.2.3      >=1.3.0      >=2.0.0
 *   <1.2                <1.2.0
 *   <=1.2.3 <=1.2 <=1   <=1.2.3     <1.3.0       <2.0.0
 *   =1.4.2  1.4.2       exactly 1.4.2
 *   =1.4  1.4  1.4.x    >=1.4.0 <1.5.0
 *   1  1.x  1.*         >=1.0.0 <2.0.0
 *   *  x  (or "")       any version (an empty SET is an error, though)
 *   ~1.2.3  ~1.2        >=1.2.3 <1.3.0   >=1.2.0 <1.3.0
 *   ~1                  >=1.0.0 <2.0.0
 *   ^1.2.3  ^1.2  ^1    >=1.2.3 <2.0.0   >=1.2.0 <2.0.0   >=1.0.0 <2.0.0
 *   ^0.2.3  ^0.0.3      >=0.2.3 <0.3.0   >=0.0.3 <0.0.4
 *   ^0.2  ^0.0  ^0      >=0.2.0 <0.3.0   >=0.0.0 <0.1.0   >=0.0.0 <1.0.0
 *
 *   Operators may be followed by spaces (">= 1.0").  Hyphen ranges
 *   ("1.0 - 2.0") are not supported: write ">=1.0 <=2.0".  "<*" and ">*"
 *   match nothing and are errors.  A version with a pre-release is a full
 *   version: ">=1.2-rc.1" is ">=1.2.0-rc.1".  At most AIGOV_RANGE_MAX_LEN
 *   bytes, AIGOV_RANGE_MAX_SETS sets and AIGOV_RANGE_MAX_BOUNDS bounds
 *   (a "1.x" or "~1.2" makes two) in all.
 *
 *   Pre-releases: a client's pre-release counts as its release against a
 *   bound without a pre-release, and sorts by SemVer precedence against
 *   a bound with one.  So 2.0.0-rc.1 is in ">=2.0" and not in "<2.0"
 *   (a 2.0 beta client talks the 2.0 API), while ">=2.0.0-rc.2" admits
 *   2.0.0-rc.10 and refuses 2.0.0-rc.1.
 *
 *
 * JSON ADAPTATION
 *
 *   An operation rewrites a response document (jansson) for old clients:
 *
 *     rename=FROM:TO     move the value at FROM to TO
 *     remove=PATH        delete the member at PATH
 *
 *   PATH = [ "$." ] STEP [ "." KEY | "[" INDEX "]" ]...
 *   STEP = KEY | "[" INDEX "]";  KEY: 1..64 of A-Z a-z 0-9 _ -;
 *   INDEX: N (0-based), -N (from the end, -1 is the last) or * (every
 *   element).  At most AIGOV_PATH_MAX_STEPS steps; the last step is a
 *   KEY (a member is what is renamed or removed).
 *
 *   TO may be a bare KEY: the new name in the same object
 *   ("rename=usage.total_tokens:total" renames usage.total_tokens to
 *   usage.total).  A full TO moves the value anywhere: FROM and TO are
 *   applied at every node their shared leading steps reach, and a "[*]"
 *   must be within those shared steps ("choices[*].message.content:
 *   choices[*].text" moves each choice's content).  Missing objects on
 *   the way to TO are created; TO replaces what was there.  Within one
 *   object (a plain rename) the member keeps its place among its
 *   siblings.  Where FROM is missing, or TO cannot be reached (a step
 *   into a string, an index out of range), that place is left as it was.
 *
 *   Applying an operation never fails: it counts the members it changed.
 */

#ifndef AIGOV_VERSION_H_INCLUDED_
#define AIGOV_VERSION_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "aigov_core.h"


#define AIGOV_VERSION_MAX_LEN    64
#define AIGOV_VERSION_NUM_MAX    999999999
#define AIGOV_RANGE_MAX_LEN      256
#define AIGOV_RANGE_MAX_SETS     8
#define AIGOV_RANGE_MAX_BOUNDS   16
#define AIGOV_PATH_MAX_LEN       256
#define AIGOV_PATH_MAX_STEPS     16
#define AIGOV_PATH_KEY_MAX       64


typedef struct {
    uint32_t          num[3];        /* missing parts are 0 */
    uint8_t           given;         /* parts written, 1..3; 0: "*" */
    uint8_t           pre_len;       /* 0: a release */
    char              pre[AIGOV_VERSION_MAX_LEN];   /* without the '-' */
} aigov_version_t;


#define AIGOV_VOP_GE   1
#define AIGOV_VOP_GT   2
#define AIGOV_VOP_LE   3
#define AIGOV_VOP_LT   4
#define AIGOV_VOP_EQ   5

typedef struct {
    uint8_t           op;            /* AIGOV_VOP_* */
    aigov_version_t   v;             /* full: given is 3 */
} aigov_vbound_t;


typedef struct {
    uint8_t           nsets;
    uint8_t           n;             /* bounds in all */
    uint8_t           end[AIGOV_RANGE_MAX_SETS];   /* set i's bounds end */
    aigov_vbound_t    bound[AIGOV_RANGE_MAX_BOUNDS];
} aigov_range_t;


/*
 * Parses a client version.  AIGOV_OK, or AIGOV_ERROR with a reason in err
 * (NUL terminated, may be NULL) and *v untouched.
 */
int aigov_version_parse(const char *s, size_t len, aigov_version_t *v,
    char *err, size_t errlen);

/* SemVer precedence: <0, 0, >0.  Missing parts are 0. */
int aigov_version_cmp(const aigov_version_t *a, const aigov_version_t *b);

/*
 * "MAJOR.MINOR.PATCH[-PRE]" into buf (NUL terminated); returns its length,
 * or 0 when it does not fit.  AIGOV_VERSION_MAX_LEN + 32 always fits.
 */
size_t aigov_version_format(const aigov_version_t *v, char *buf,
    size_t size);

/*
 * Parses a range.  AIGOV_OK, or AIGOV_ERROR with a reason in err and *r
 * untouched.
 */
int aigov_range_parse(const char *s, size_t len, aigov_range_t *r,
    char *err, size_t errlen);

/* 1 when v is in r, else 0. */
int aigov_range_match(const aigov_range_t *r, const aigov_version_t *v);

/*
 * The range ">=V" (version_minimum): *r is filled, never fails for a
 * parsed V.
 */
void aigov_range_min(aigov_range_t *r, const aigov_version_t *v);

/*
 * A date for Deprecation / Sunset: "YYYY-MM-DD" (midnight UTC),
 * "YYYY-MM-DDTHH:MM:SSZ" or "@SECONDS" (Unix time), years 1970..9999.
 * AIGOV_OK with *t, or AIGOV_ERROR.
 */
int aigov_parse_date(const char *s, size_t len, int64_t *t);


/* JSON adaptation */

#define AIGOV_STEP_KEY     0
#define AIGOV_STEP_INDEX   1
#define AIGOV_STEP_ALL     2             /* [*] */

typedef struct {
    uint8_t           type;          /* AIGOV_STEP_* */
    uint8_t           len;           /* key length */
    int32_t           index;         /* [N], negative from the end */
    const char       *key;           /* points into the parsed text */
} aigov_step_t;

typedef struct {
    uint8_t           n;
    aigov_step_t      step[AIGOV_PATH_MAX_STEPS];
} aigov_path_t;

#define AIGOV_ADAPT_RENAME   1
#define AIGOV_ADAPT_REMOVE   2

typedef struct {
    uint8_t           type;          /* AIGOV_ADAPT_* */
    uint8_t           common;        /* rename: steps FROM and TO share */
    aigov_path_t      from;          /* remove: the path */
    aigov_path_t      to;
} aigov_adapt_op_t;


/*
 * Parses a path; its keys point into s, which must outlive the path.
 * AIGOV_OK, or AIGOV_ERROR with a reason in err.
 */
int aigov_path_parse(const char *s, size_t len, aigov_path_t *p,
    char *err, size_t errlen);

/*
 * Parses "rename=FROM:TO" or "remove=PATH" (keys point into s).
 * AIGOV_OK, AIGOV_DECLINED when s starts with neither "rename=" nor
 * "remove=", or AIGOV_ERROR with a reason in err.
 */
int aigov_adapt_op_parse(const char *s, size_t len, aigov_adapt_op_t *op,
    char *err, size_t errlen);

struct json_t;

/*
 * Parses a response body: a json_t the caller decrefs, or NULL when the
 * body is not one JSON document (duplicate keys, and integers beyond 64
 * bits, are refused too: rewriting would change them).
 */
struct json_t *aigov_adapt_load(const char *body, size_t len);

/* Applies op to doc; returns the number of members changed (0: none). */
size_t aigov_adapt_apply(struct json_t *doc, const aigov_adapt_op_t *op);

/*
 * Serializes doc compactly (numbers keep their values; a real may be
 * written with more digits than it came with).  Returns the size needed;
 * buf holds the text when that is <= size (no NUL).  0 on error.
 */
size_t aigov_adapt_dump(const struct json_t *doc, char *buf, size_t size);


#endif /* AIGOV_VERSION_H_INCLUDED_ */
