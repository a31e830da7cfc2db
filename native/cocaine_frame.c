/*
 * cocaine_frame.c: see cocaine_frame.h for the API and native/README.md for
 * the rules (what is an error, and the exact moment it is detected).
 *
 * The scanner consumes one *token* at a time: a scalar with its body, a
 * raw/str/bin/ext with its body, or a container header. A token is consumed
 * only once all of its bytes are present; otherwise the scan stops in front
 * of it and resumes there on the next call. Re-reading a token header costs
 * at most 9 bytes and a raw body is never read at all, so a frame arriving
 * in pieces is scanned once overall.
 *
 * Checks happen when a token is consumed, in byte order, exactly where
 * msgpack.Unpacker (the C extension) makes them:
 *   - 0xc1:                         when its byte is read         -> MALFORMED
 *   - ext (c7-c9, d4-d8):           once header and body are in   -> MALFORMED
 *     except a valid timestamp (type -1), which the Unpacker decodes by
 *     itself: the frame is rejected when it is complete -> MALFORMED
 *   - container header:             once the header is in:
 *        depth first                                               -> DEPTH
 *        then length (array > max_frame_size, map > max_map_len)   -> TOO_LARGE
 *   - raw/str/bin/ext header:       once the header is in, if its body
 *        would end past the first max_frame_size bytes of the frame -> TOO_LARGE
 *   - map entry whose key is a container: when its value is complete -> FORMAT
 * and, when the scan stops:
 *   - frame complete: a timestamp inside -> MALFORMED, then the frame shape -> FORMAT
 *   - no complete token left: more than max_frame_size bytes buffered for the frame -> TOO_LARGE
 *
 * The scan never looks past the first max_frame_size bytes of a frame, so
 * every verdict depends on the bytes of the stream alone, never on how they
 * were split into calls.
 */
#include "cocaine_frame.h"

#include <string.h>

/* kinds of the top-level elements 0..3 */
#define CF_K_NONE 0u  /* not seen */
#define CF_K_UINT 1u  /* an integer >= 0, any width */
#define CF_K_ARRAY 2u /* an array */
#define CF_K_OTHER 3u /* anything else */

/* internal: the scan of the current frame finished it */
#define CF_DONE 16

/* cf_decoder.discard */
#define CF_SKIPPING 1u /* the oversize raw's body is being skipped */
#define CF_TAIL 2u     /* scanning the rest of a frame reported oversize */
#define CF_COLLECTING 3u /* the payload was reported (CF_PAYLOAD); the caller is taking it */
#define CF_COLLECTED 4u  /* scanning the rest of a frame whose payload the caller took */

static inline uint16_t load16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static inline uint32_t load32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t load64(const uint8_t *p) { return ((uint64_t)load32(p) << 32) | load32(p + 4); }

void cf_init(cf_decoder *d, int exact_arity, uint64_t max_frame_size, uint32_t max_map_len)
{
    memset(d, 0, offsetof(cf_decoder, stack));
    d->exact_arity = exact_arity ? 1 : 0;
    d->max_frame_size = max_frame_size;
    d->max_map_len = max_map_len;
}

void cf_init_skipping(cf_decoder *d, int exact_arity, uint64_t max_frame_size, uint32_t max_map_len)
{
    cf_init(d, exact_arity, max_frame_size, max_map_len);
    d->skip_oversize = 1;
}

void cf_collect_payloads(cf_decoder *d, uint64_t min_size) { d->collect_min = min_size; }

static void reset_frame(cf_decoder *d)
{
    d->depth = 0;
    d->scanned = 0;
    d->wanted = 0;
    d->top_is_array = 0;
    d->top_len = 0;
    memset(d->elem_kind, 0, sizeof d->elem_kind);
    d->fast = 0;
    d->timestamp = 0;
    d->payload_off = 0;
    d->payload_len = 0;
    d->discard = 0;
    d->skip = 0;
    d->origin = 0;
}

static int fail(cf_decoder *d, int code)
{
    d->error = code;
    return code;
}

/* Index of the next top-level element (valid while depth >= 1 and the top is an array). */
static inline uint32_t top_index(const cf_decoder *d) { return d->top_len - d->stack[0].remaining; }

/* A value ended at relative offset `end`. Pop every container it completes.
 * Returns CF_NEED_DATA to keep scanning, CF_DONE when the top-level value is
 * complete, or an error. */
static int value_done(cf_decoder *d, uint64_t end, int is_container)
{
    while (d->depth > 0) {
        cf_level *lv = &d->stack[d->depth - 1];
        if (lv->is_map) {
            if (!lv->want_value) {
                /* A key: Python cannot hash a list or a dict. The Unpacker finds
                 * out when it stores the entry, i.e. once the value is complete. */
                lv->want_value = 1;
                lv->bad_key = (uint8_t)(is_container ? 1 : 0);
                return CF_NEED_DATA;
            }
            if (lv->bad_key)
                return fail(d, CF_E_FORMAT);
            lv->want_value = 0;
        } else if (d->depth == 1) {
            uint32_t i = top_index(d);
            if (i < 4)
                d->elem_end[i] = end;
        }
        if (--lv->remaining > 0)
            return CF_NEED_DATA;
        d->depth--;
        is_container = 1;
    }
    return CF_DONE;
}

/* An ext token t (header hdr bytes, then body bytes: type byte and data) is
 * rejected at once unless it is what msgpack.Unpacker turns into a Timestamp
 * by itself: type -1 with 4 bytes, or 8 or 12 bytes whose nanoseconds field
 * is below 10^9. ext32 declaring 0xffffffff bytes comes here with body 0
 * (see scan()); the Unpacker then reads the type from the length field and
 * fails on it, and so does this. */
static int timestamp_ok(const uint8_t *t, uint64_t hdr, uint64_t body)
{
    const uint8_t *data = t + hdr + 1;
    if (body == 0 || t[hdr] != 0xff)
        return 0;
    switch (body - 1) {
    case 4:
        return 1;
    case 8:
        return (load64(data) >> 34) < 1000000000u;
    case 12:
        return load32(data) < 1000000000u;
    default:
        return 0;
    }
}

/* Record what a token at the top of the frame structure is, for the shape check. */
static inline void note_element(cf_decoder *d, uint64_t pos, uint32_t kind, uint64_t value, uint32_t count)
{
    uint32_t i = top_index(d);
    if (i >= 4)
        return;
    d->elem_start[i] = pos;
    d->elem_kind[i] = kind;
    if (i < 2)
        d->elem_value[i] = value;
    else
        d->elem_count[i] = count;
}

/* Is the raw whose header was just read the single element of args: the
 * payload of a chunk or an invoke (CF_FAST_RAW)? */
static inline int is_payload(const cf_decoder *d)
{
    return d->depth == 2 && d->top_is_array && top_index(d) == 2 && d->elem_kind[2] == CF_K_ARRAY &&
           d->elem_count[2] == 1;
}

/* Rule 5c: may the raw whose header was just read be skipped? Only in a frame
 * well-formed so far: a top-level array of the right arity whose elements 0
 * and 1 are ints >= 0, the raw inside element 2, or 3, which is an array
 * (args, headers), element 2 being an array too. */
static int oversize_ok(const cf_decoder *d)
{
    uint32_t i;
    if (!d->skip_oversize || d->depth < 2 || !d->top_is_array)
        return 0;
    if (d->exact_arity && d->top_len != 3)
        return 0;
    i = top_index(d);
    return (i == 2 || i == 3) && d->elem_kind[0] == CF_K_UINT && d->elem_kind[1] == CF_K_UINT &&
           d->elem_kind[2] == CF_K_ARRAY && d->elem_kind[i] == CF_K_ARRAY;
}

/* Scan the current frame from d->scanned on. p/avail: the frame's bytes so far. */
static int scan(cf_decoder *d, const uint8_t *p, uint64_t avail)
{
    uint64_t pos = d->scanned;
    uint64_t hdr = 1;  /* header bytes of the current token */
    uint64_t body = 0; /* bytes after its header */
    int rc = CF_NEED_DATA;

    while (pos < avail) {
        const uint8_t *t = p + pos;
        uint64_t have = avail - pos;
        uint8_t b = t[0];
        uint32_t count = 0;    /* container: elements (array) or entries (map) */

        hdr = 1;
        body = 0;
        int is_map = -1;       /* -1: not a container */
        int is_raw = 0;
        uint32_t kind = CF_K_OTHER;
        uint64_t value = 0;

        if (b <= 0x7f) {
            kind = CF_K_UINT;
            value = b;
        } else if (b <= 0x8f) {
            is_map = 1;
            count = b & 0x0fu;
        } else if (b <= 0x9f) {
            is_map = 0;
            count = b & 0x0fu;
        } else if (b <= 0xbf) {
            is_raw = 1;
            body = b & 0x1fu;
        } else if (b >= 0xe0) {
            /* negative fixint */
        } else {
            switch (b) {
            case 0xc0: /* nil */
            case 0xc2: /* false */
            case 0xc3: /* true */
                break;
            case 0xc1:
                return fail(d, CF_E_MALFORMED);
            case 0xc4: /* bin8 */
            case 0xd9: /* str8 */
                hdr = 2;
                if (have < hdr)
                    goto need;
                is_raw = 1;
                body = t[1];
                break;
            case 0xc5: /* bin16 */
            case 0xda: /* raw16 */
                hdr = 3;
                if (have < hdr)
                    goto need;
                is_raw = 1;
                body = load16(t + 1);
                break;
            case 0xc6: /* bin32 */
            case 0xdb: /* raw32 */
                hdr = 5;
                if (have < hdr)
                    goto need;
                is_raw = 1;
                body = load32(t + 1);
                break;
            case 0xc7: /* ext8: type byte + data */
                hdr = 2;
                if (have < hdr)
                    goto need;
                body = (uint64_t)t[1] + 1;
                goto ext;
            case 0xc8: /* ext16 */
                hdr = 3;
                if (have < hdr)
                    goto need;
                body = (uint64_t)load16(t + 1) + 1;
                goto ext;
            case 0xc9: /* ext32: the Unpacker computes length + 1 in 32 bits, so
                          0xffffffff wraps to 0 and fails right after the header */
                hdr = 5;
                if (have < hdr)
                    goto need;
                body = (uint32_t)(load32(t + 1) + 1u);
                goto ext;
            case 0xd4: /* fixext 1, 2, 4, 8, 16: type byte + data */
            case 0xd5:
            case 0xd6:
            case 0xd7:
            case 0xd8:
                body = 1 + (1u << (b - 0xd4));
                goto ext;
            case 0xca: /* float32 */
                body = 4;
                break;
            case 0xcb: /* float64 */
                body = 8;
                break;
            case 0xcc: /* uint8..uint64 */
            case 0xcd:
            case 0xce:
            case 0xcf:
                body = 1u << (b - 0xcc);
                if (have < 1 + body)
                    goto need;
                kind = CF_K_UINT;
                value = body == 1 ? t[1] : body == 2 ? load16(t + 1) : body == 4 ? load32(t + 1) : load64(t + 1);
                break;
            case 0xd0: /* int8..int64: an id may use a signed marker, if it is >= 0 */
            case 0xd1:
            case 0xd2:
            case 0xd3: {
                int64_t v;
                body = 1u << (b - 0xd0);
                if (have < 1 + body)
                    goto need;
                v = body == 1 ? (int8_t)t[1]
                    : body == 2 ? (int16_t)load16(t + 1)
                    : body == 4 ? (int32_t)load32(t + 1)
                                : (int64_t)load64(t + 1);
                if (v >= 0) {
                    kind = CF_K_UINT;
                    value = (uint64_t)v;
                }
                break;
            }
            case 0xdc: /* array16 */
                hdr = 3;
                if (have < hdr)
                    goto need;
                is_map = 0;
                count = load16(t + 1);
                break;
            case 0xdd: /* array32 */
                hdr = 5;
                if (have < hdr)
                    goto need;
                is_map = 0;
                count = load32(t + 1);
                break;
            case 0xde: /* map16 */
                hdr = 3;
                if (have < hdr)
                    goto need;
                is_map = 1;
                count = load16(t + 1);
                break;
            default: /* 0xdf map32 */
                hdr = 5;
                if (have < hdr)
                    goto need;
                is_map = 1;
                count = load32(t + 1);
                break;
            }
        }

        /* A raw whose body would end past the window can never complete:
         * refuse it at its header instead of waiting for max_frame_size bytes.
         * (origin: the part of the frame the caller took away, before p.) */
        if (is_raw && d->origin + pos + hdr + body > d->max_frame_size) {
            int first = d->discard == 0 || d->discard == CF_COLLECTED;
            if (!oversize_ok(d))
                return fail(d, CF_E_TOO_LARGE);
            /* Rule 5c: report the frame once, then skip the body (cf_next). */
            d->discard = CF_SKIPPING;
            d->skip = body;
            d->payload_len = body;
            d->scanned = pos + hdr;
            d->origin = 0;
            return first ? CF_OVERSIZE : CF_SKIPPED;
        }
        if (have < hdr + body) {
            /* A large payload still arriving: the caller collects it itself
             * (cf_collect_payloads), rather than buffer the frame around it. */
            if (is_raw && d->collect_min && body >= d->collect_min && d->discard == 0 && is_payload(d)) {
                d->discard = CF_COLLECTING;
                d->payload_len = body;
                d->scanned = pos + hdr;
                return CF_PAYLOAD;
            }
            goto need;
        }

        if (is_map >= 0) {
            /* container header */
            if (d->depth >= CF_MAX_DEPTH)
                return fail(d, CF_E_DEPTH);
            if (is_map ? count > d->max_map_len : (uint64_t)count > d->max_frame_size)
                return fail(d, CF_E_TOO_LARGE);
            if (d->depth == 0) {
                d->top_is_array = (uint32_t)!is_map;
                d->top_len = count;
            } else if (d->depth == 1 && d->top_is_array) {
                note_element(d, pos, is_map ? CF_K_OTHER : CF_K_ARRAY, 0, count);
            }
            pos += hdr;
            if (count == 0) {
                rc = value_done(d, pos, 1);
                if (rc != CF_NEED_DATA)
                    goto stop;
                continue;
            }
            {
                cf_level *lv = &d->stack[d->depth++];
                lv->remaining = count;
                lv->is_map = (uint8_t)is_map;
                lv->want_value = 0;
                lv->bad_key = 0;
            }
            continue;
        }

        /* scalar, raw */
        if (d->depth == 1 && d->top_is_array) {
            note_element(d, pos, kind, value, 0);
        } else if (is_raw && is_payload(d)) {
            d->fast = 1;
            d->payload_off = pos + hdr;
            d->payload_len = body;
        }
        pos += hdr + body;
        rc = value_done(d, pos, 0);
        if (rc != CF_NEED_DATA)
            goto stop;
        continue;

    ext:
        if (d->origin + pos + hdr + body > d->max_frame_size) /* the same for an ext body */
            return fail(d, CF_E_TOO_LARGE);
        if (have < hdr + body)
            goto need;
        if (!timestamp_ok(t, hdr, body))
            return fail(d, CF_E_MALFORMED);
        /* A well-formed timestamp: the Unpacker builds a Timestamp for it
         * without asking ext_hook, so the pure twin only finds it in the
         * complete frame. Keep scanning; finish() rejects the frame. */
        d->timestamp = 1;
        if (d->depth == 1 && d->top_is_array)
            note_element(d, pos, CF_K_OTHER, 0, 0);
        pos += hdr + body;
        rc = value_done(d, pos, 0);
        if (rc != CF_NEED_DATA)
            goto stop;
    }

    hdr = 1; /* every token consumed: the next one needs at least a byte */
    body = 0;
need:
    d->scanned = pos;
    d->wanted = pos + hdr + body;
    return CF_NEED_DATA;

stop:
    d->scanned = pos;
    return rc;
}

/* A raw the caller took (skipped, or collected) is complete: the rest of the
 * frame is scanned from the next call's buf[start], in the given mode. */
static int after_raw(cf_decoder *d, uint32_t mode)
{
    d->discard = mode;
    d->scanned = 0;
    d->wanted = 0;
    return value_done(d, 0, 0);
}

/* The frame reported oversize ended d->scanned bytes after buf[start]: the
 * checks of finish() not made when it was reported, then drop it. */
static int discard_done(cf_decoder *d, size_t start, cf_frame *out)
{
    if (d->timestamp)
        return fail(d, CF_E_MALFORMED);
    if (d->top_len >= 4 && d->elem_kind[3] != CF_K_ARRAY)
        return fail(d, CF_E_FORMAT);
    memset(out, 0, sizeof *out);
    out->start = start;
    out->end = start + d->scanned;
    reset_frame(d);
    return CF_SKIPPED;
}

/* The complete frame is d->scanned bytes at buf[start]: check and report it. */
static int finish(cf_decoder *d, size_t start, cf_frame *out)
{
    uint64_t size = d->scanned;
    uint32_t n = d->top_len;

    if (d->origin + size > d->max_frame_size) /* cannot happen: the scan window; kept as a guard */
        return fail(d, CF_E_TOO_LARGE);
    if (d->timestamp)
        return fail(d, CF_E_MALFORMED);
    if (!d->top_is_array || n < 3 || (d->exact_arity && n != 3))
        return fail(d, CF_E_FORMAT);
    if (d->elem_kind[0] != CF_K_UINT || d->elem_kind[1] != CF_K_UINT || d->elem_kind[2] != CF_K_ARRAY)
        return fail(d, CF_E_FORMAT);
    if (n >= 4 && d->elem_kind[3] != CF_K_ARRAY)
        return fail(d, CF_E_FORMAT);

    out->elem0 = d->elem_value[0];
    out->elem1 = d->elem_value[1];
    out->start = start;
    out->end = start + size;
    out->args_off = start + d->elem_start[2];
    out->args_len = d->elem_end[2] - d->elem_start[2];
    out->nargs = d->elem_count[2];
    out->flags = 0;
    out->headers_off = 0;
    out->headers_len = 0;
    out->payload_off = 0;
    out->payload_len = 0;
    if (n >= 4) {
        out->flags |= CF_HAS_HEADERS;
        out->headers_off = start + d->elem_start[3];
        out->headers_len = d->elem_end[3] - d->elem_start[3];
    }
    if (d->fast) {
        out->flags |= CF_FAST_RAW;
        out->payload_off = start + d->payload_off;
        out->payload_len = d->payload_len;
    }
    if (d->discard == CF_COLLECTED) {
        /* Element 2 began before buf[start]; the caller holds its payload. */
        out->args_off = 0;
        out->args_len = 0;
        out->payload_off = 0;
        reset_frame(d);
        return CF_PAYLOAD_FRAME;
    }
    reset_frame(d);
    return CF_FRAME;
}

int cf_next(cf_decoder *d, const uint8_t *buf, size_t len, size_t start, cf_frame *out)
{
    int rc;
    uint64_t avail, window;

    if (d == NULL || out == NULL || start > len || (buf == NULL && len > 0))
        return CF_E_USAGE;
    if (d->error)
        return d->error;
    avail = (uint64_t)(len - start);
    if (d->discard == CF_COLLECTING) {
        /* The caller took the payload: buf[start] is the byte after it, and
         * the payload is the value just completed. */
        d->origin = d->scanned + d->payload_len;
        d->fast = 1;
        rc = after_raw(d, CF_COLLECTED);
        if (rc < 0)
            return rc;
        if (rc == CF_DONE)
            return finish(d, start, out);
    }
    if (d->discard == CF_SKIPPING) {
        /* The body of an oversize raw: never looked at, the caller drops it. */
        uint64_t take = d->skip < avail ? d->skip : avail;
        if (take == 0) {
            d->wanted = 1;
            return CF_NEED_DATA;
        }
        d->skip -= take;
        memset(out, 0, sizeof *out);
        out->start = start;
        out->end = start + take;
        if (d->skip == 0) {
            /* The raw is complete; the rest of the frame gets a fresh window. */
            rc = after_raw(d, CF_TAIL);
            if (rc < 0)
                return rc;
            if (rc == CF_DONE)
                return discard_done(d, (size_t)out->end, out);
        }
        return CF_SKIPPED;
    }
    /* Only the first max_frame_size bytes of a frame are ever looked at:
     * whatever lies beyond cannot change the verdict, so the outcome does
     * not depend on how the stream was cut into pieces. */
    window = d->max_frame_size - d->origin;
    rc = scan(d, buf + start, avail < window ? avail : window);
    if (rc == CF_DONE)
        return d->discard == CF_TAIL ? discard_done(d, start, out) : finish(d, start, out);
    if (rc == CF_OVERSIZE || rc == CF_SKIPPED || rc == CF_PAYLOAD) {
        memset(out, 0, sizeof *out);
        out->elem0 = d->elem_value[0];
        out->elem1 = d->elem_value[1];
        out->start = start;
        out->end = start + d->scanned;
        out->payload_len = d->payload_len;
        return rc;
    }
    if (rc == CF_NEED_DATA && avail > window)
        return fail(d, CF_E_TOO_LARGE);
    return rc;
}

size_t cf_next_many(cf_decoder *d, const uint8_t *buf, size_t len, size_t start, cf_frame *out,
                    size_t max_frames, int *status)
{
    size_t n = 0;
    int rc = CF_FRAME;

    while (n < max_frames) {
        rc = cf_next(d, buf, len, start, &out[n]);
        if (rc != CF_FRAME)
            break;
        start = (size_t)out[n].end;
        n++;
    }
    if (status != NULL)
        *status = rc;
    return n;
}

uint64_t cf_wanted(const cf_decoder *d) { return d->wanted; }

const char *cf_strerror(int code)
{
    switch (code) {
    case CF_FRAME:
        return "frame";
    case CF_NEED_DATA:
        return "need data";
    case CF_OVERSIZE:
        return "oversize frame";
    case CF_SKIPPED:
        return "skipped";
    case CF_PAYLOAD:
        return "payload to collect";
    case CF_PAYLOAD_FRAME:
        return "frame with a collected payload";
    case CF_E_MALFORMED:
        return "malformed msgpack (reserved byte 0xc1 or an ext value)";
    case CF_E_FORMAT:
        return "not a frame: expected [uint, uint, [args...] (, [headers...])]";
    case CF_E_TOO_LARGE:
        return "frame, array, map or string over its size limit";
    case CF_E_DEPTH:
        return "nested too deep";
    case CF_E_USAGE:
        return "bad call";
    default:
        return "unknown status";
    }
}
