/*
 * ngx_aigov: rule-based fallback engine, free of nginx.
 *
 * When the model is unavailable (circuit open, kill switch, upstream
 * error), a rules file decides what the client gets: a status, a few
 * headers and a JSON body.  The rules are evaluated over the parsed JSON
 * request body and over request attributes supplied by the caller; the
 * first rule whose condition holds wins, else the default applies.
 *
 * The file is loaded once (at nginx -t / configuration time) into an
 * immutable aigov_rules_t; every error found then names the rule and the
 * place: rule "small-classify" (#2): when.all[1]: "lte" needs a number.
 *
 *
 * THE RULES FILE
 *
 *   {
 *     "comment": "optional: a string or an array of strings, ignored",
 *     "rules": [ RULE, ... ],                  0..1000 rules
 *     "default": ACTION                        optional
 *   }
 *
 * At least one of "rules" (non-empty) and "default" is required.  Other
 * top level keys are errors (typos must not go unnoticed).  Duplicate keys
 * anywhere are errors.  "comment" (JSON has no comments) may also appear
 * in every rule and in the default.
 *
 *   RULE   = { "name": NAME, "when": CONDITION, ACTION members,
 *              "comment": "..." }
 *   ACTION = { "status": 100..599,                     required
 *              "headers": { "Name": "value", ... },    optional, at most 16
 *              "response": any JSON value }            optional
 *
 * NAME is 1..128 of A-Z a-z 0-9 . _ : - and unique; "default" is reserved
 * (results name the default "default").  Without "response" the result has
 * no body (e.g. for 204).  Header names are RFC 9110 tokens of at most 64
 * characters; Content-Length, Transfer-Encoding, Connection, Keep-Alive,
 * Proxy-Connection, Upgrade, TE and Trailer are refused (nginx owns
 * framing), and so is the same name twice in any case; values are at most
 * 4096 bytes without control characters other than tab.  Content-Type may
 * be set (e.g. application/problem+json).
 *
 *
 * PATHS
 *
 *   $                  the whole request body
 *   $.key              member "key" of an object (key: 1..64 of
 *                      A-Z a-z 0-9 _ -)
 *   $[N], $[-N]        element N of an array, from the end when negative
 *                      ([-1] is the last); N has at most 9 digits
 *   $.messages[-1].content, $.a.b[0].c: any chain of the above
 *   @name              a request attribute (name: 1..128 of lowercase
 *                      a-z, 0-9 . _ -), e.g. @method, @path, @client,
 *                      @model, @variant, @request_id, @header.x-tier
 *
 * At most 256 bytes and 32 steps.  Malformed paths are load errors.  A
 * path "resolves" to a value or is "missing": a missing key, an index out
 * of range, a step into something that is not an object / array, any $
 * path when there is no body, an attribute the caller did not supply.  A
 * JSON null is a value, not missing.  Attributes are strings.
 *
 *
 * CONDITIONS
 *
 *   { "all": [ CONDITION, ... ] }    every one holds ([] holds)
 *   { "any": [ CONDITION, ... ] }    at least one holds ([] does not)
 *   { "not": CONDITION }
 *   { "field": PATH, OPERATOR: OPERAND }    exactly one operator
 *
 * A combinator is the only key of its object.  Conditions nest at most 16
 * levels deep (the "when" condition is level 1) and a rule has at most
 * 1024 of them.  Operators:
 *
 *   eq, ne         string, number, boolean or null
 *   lt, lte,
 *   gt, gte        number
 *   between        [lo, hi], numbers, lo <= hi, inclusive at both ends
 *   in, not_in     non-empty array (at most 1024) of strings, numbers,
 *                  booleans or null
 *   matches        string: POSIX extended regex (regcomp REG_EXTENDED |
 *                  REG_NOSUB, C locale: bytes), found anywhere in the
 *                  value unless anchored with ^ and $ (no REG_NEWLINE: ^
 *                  and $ are the ends of the value, "." matches newline;
 *                  but a ^ inside a group, as in "(^|[^a-z])refund", also
 *                  matches after a newline, a glibc quirk); matching is
 *                  linear in the value's length
 *   matches_i      the same, case-insensitive (REG_ICASE)
 *   exists         true or false
 *   len_gt, len_lt non-negative integer
 *
 * Semantics.  The operand's type decides how a value compares:
 *
 *   - string operand (eq, ne, in): equal to a string value (body string
 *     or attribute) with the same bytes; never to a number, even "16"
 *     against 16;
 *   - number operand (eq, ne, in, lt ... between): compares numerically
 *     with a number value or with a string value that is, in full, a JSON
 *     number ("16", "-2.5e3"; not " 16", "0x10", "inf", "1,5"); integers
 *     compare exactly, anything else as doubles;
 *   - boolean / null operand: equal to the JSON literal only (attributes,
 *     being strings, never are);
 *   - matches, matches_i: string values only (body strings may contain
 *     NUL bytes: they are matched in full);
 *   - len_gt, len_lt: the length in bytes of a string value, the number of
 *     elements of an array; other values have no length;
 *   - exists: true when the path resolves (null included), false when it
 *     is missing.
 *
 * A missing field, or a value of another type (a "type mismatch"), makes
 * every operator false, except: exists:false holds for a missing field,
 * and ne and not_in, which are exactly "not eq" and "not in", hold for a
 * missing field and for a type mismatch.  To require presence as well,
 * write { "all": [ { "field": P, "exists": true }, { ..."ne"... } ] }.
 *
 * Regexes are POSIX, not PCRE: inline flags such as "(?i)" are refused at
 * load (use "matches_i"); so are what makes glibc's regcomp() or regexec()
 * take seconds: backreferences (\1..\9), a repetition of something that
 * can match the empty string ("(a*)*", "(a|)+") and two repetitions in a
 * row ("a**", PCRE's lazy "a*?"), more than 32 anchors (^, $), patterns
 * whose repetitions expand to more than 4096 atoms when compiled (glibc
 * copies "a{3}" as "aaa" and "a+" as "aa*"), counted repetitions over
 * 255, parentheses nested deeper than 32; and an unmatched ")", patterns
 * over 1024 bytes.
 *
 *
 * TEMPLATES
 *
 * Every string of "response" (object keys excepted) and every header value
 * may contain ${PATH}; "$$" writes a literal "$" (so "$${" writes "${",
 * and "$$${$.price}" a dollar sign then the value); any other "$" is
 * literal.  A substitution writes
 *
 *   - a string value: its text (escaped into the JSON string);
 *   - a number, boolean or null: its JSON text (16, 2.5, true, null);
 *   - an object or array: its compact JSON text;
 *   - a missing value: nothing.
 *
 * A string that is exactly one "${PATH}" is replaced by the value itself,
 * keeping its JSON type ("max": "${$.max_tokens}" gives "max": 16, and an
 * object stays an object); a missing value gives "".  Header values get
 * the same text with control characters (CR, LF, NUL...; tab is kept)
 * removed.  The body is written as compact JSON, members in file order,
 * reals in the shortest form that reads back the same (0.1, 1.0, 1e+300);
 * attribute bytes that are not valid UTF-8 become U+FFFD, so the body is
 * always valid JSON.  Limits: 64 substitutions per rule (response and
 * headers), a body of at most 64 KiB and header values of at most 4096
 * bytes after substitution (larger is an evaluation error, see below), a
 * response nested at most 32 levels deep.  An unclosed "${" or a bad path
 * inside one is a load error.
 */

#ifndef AIGOV_RULES_H_INCLUDED_
#define AIGOV_RULES_H_INCLUDED_


#include <stddef.h>


#define AIGOV_RULES_OK              0
#define AIGOV_RULES_ERROR          -1
#define AIGOV_RULES_DECLINED       -2

#define AIGOV_RULES_MAX_RULES           1000
#define AIGOV_RULES_MAX_DEPTH           16      /* condition nesting */
#define AIGOV_RULES_MAX_CONDS           1024    /* per rule */
#define AIGOV_RULES_MAX_SET             1024    /* values of in, not_in */
#define AIGOV_RULES_MAX_NAME            128
#define AIGOV_RULES_MAX_PATH            256
#define AIGOV_RULES_MAX_STEPS           32
#define AIGOV_RULES_MAX_REGEX           1024
#define AIGOV_RULES_MAX_HEADERS         16
#define AIGOV_RULES_MAX_HEADER_NAME     64
#define AIGOV_RULES_MAX_HEADER_VALUE    4096
#define AIGOV_RULES_MAX_SUBST           64      /* per rule */
#define AIGOV_RULES_MAX_BODY            65536
#define AIGOV_RULES_MAX_NESTING         32      /* response nesting */


typedef struct aigov_rules_s  aigov_rules_t;

struct json_t;


/*
 * A request attribute, "@name" in paths: name without the '@' ("method",
 * "header.x-tier"), lowercase; value any bytes (not NUL terminated).  When
 * a name appears twice the first entry wins.
 */
typedef struct {
    const char  *name;
    size_t       name_len;
    const char  *value;
    size_t       value_len;
} aigov_rules_attr_t;


typedef struct {
    const char  *name;          /* in the rules, NUL terminated */
    size_t       name_len;
    const char  *value;         /* in the rules or in the result's hbuf,
                                   NUL terminated, no CR, LF or NUL */
    size_t       value_len;
} aigov_rules_header_t;


typedef struct {
    int                    status;
    const char            *rule;     /* the rule's name or "default" */
    size_t                 index;    /* 1-based rule number, 0: default */

    char                  *body;     /* malloc'd JSON, NUL terminated;
                                        NULL when there is no "response" */
    size_t                 body_len;

    size_t                 nheaders;
    aigov_rules_header_t   headers[AIGOV_RULES_MAX_HEADERS];

    const char            *error;    /* AIGOV_RULES_ERROR: static reason */

    char                  *hbuf;     /* private: header values */
} aigov_rules_result_t;


/*
 * Parses and validates a rules file (len bytes, need not be NUL
 * terminated).  Returns the rules, or NULL with a NUL terminated reason in
 * err (when err is not NULL and errlen > 0; truncated to fit).
 *
 * The rules are malloc'd (not in a pool: free them with aigov_rules_free)
 * and never written after loading: match and eval only read them (glibc's
 * regexec() locks its own lazily built automaton), so one aigov_rules_t
 * may be shared by threads and by the workers forked after loading.
 * Cost: load is linear in the file (each regex compiled twice); an eval
 * is a walk of the conditions, up to the winning rule, plus one malloc'd
 * body (and one buffer for templated header values): about 0.6 us for
 * conf/rules-example.json.  A regex costs about 7 ms per MiB of the value
 * it is matched against, whatever the pattern.
 */
aigov_rules_t *aigov_rules_load(const char *json, size_t len, char *err,
    size_t errlen);

/* NULL is allowed. */
void aigov_rules_free(aigov_rules_t *rules);

/* Number of rules (not counting the default). */
size_t aigov_rules_count(const aigov_rules_t *rules);

/* Name of rule i (0-based), NUL terminated, or NULL when out of range. */
const char *aigov_rules_name(const aigov_rules_t *rules, size_t i);

/* Whether any condition or template has a $ path: else the caller need
 * not read or parse the request body. */
int aigov_rules_uses_body(const aigov_rules_t *rules);

/*
 * The distinct attribute names the rules use (without '@', NUL
 * terminated), i in 0..n-1 where n = aigov_rules_nattrs(): the caller
 * needs to supply only these, and may warn about names it never provides.
 */
size_t aigov_rules_nattrs(const aigov_rules_t *rules);
const char *aigov_rules_attr_name(const aigov_rules_t *rules, size_t i);

/*
 * The first rule whose condition holds: its 0-based index; else -1 (the
 * default, or nothing when there is none).  body may be NULL.  Does not
 * allocate, except to copy an attribute value of 1 KiB or more that a
 * regex is matched against (regexec() wants a NUL after its subject).
 */
int aigov_rules_match(const aigov_rules_t *rules, const struct json_t *body,
    const aigov_rules_attr_t *attrs, size_t nattrs);

/*
 * Matches and renders the result of the winning rule or the default.
 *
 *   AIGOV_RULES_OK        out is filled;
 *   AIGOV_RULES_DECLINED  no rule matched and there is no default (status
 *                         0, rule NULL);
 *   AIGOV_RULES_ERROR     the winning rule could not be rendered: out of
 *                         memory, or the body or a header value over its
 *                         limit; out->status, rule and index say which
 *                         rule, out->error why; no body, no headers.
 *
 * out borrows from rules and body only during the call; afterwards it
 * borrows rule names, header names and constant header values from rules
 * (keep rules alive while using out).  Call aigov_rules_result_free()
 * after any return.  The body must not be modified during the call.
 */
int aigov_rules_eval(const aigov_rules_t *rules, const struct json_t *body,
    const aigov_rules_attr_t *attrs, size_t nattrs,
    aigov_rules_result_t *out);

/* Frees the body and header values; out may be reused. */
void aigov_rules_result_free(aigov_rules_result_t *out);


#endif /* AIGOV_RULES_H_INCLUDED_ */
