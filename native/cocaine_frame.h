/*
 * cocaine_frame: an incremental, allocation-free scanner for Cocaine frames.
 *
 * A frame is one top-level msgpack value on a byte stream (PROTOCOL.md 1.1):
 *   generation A: [type, session, args]            exactly 3 elements
 *   generation B: [channel, type, args, headers?]  3 or more elements
 *
 * The scanner does not build objects. It walks the msgpack structure, checks
 * it against the rules in native/README.md (the same rules the pure-Python
 * twin enforces on top of msgpack.Unpacker) and reports where the parts of a
 * complete frame are in the caller's buffer. The caller decodes the args and
 * headers slices itself; when args is exactly one raw ([data], the shape of
 * every chunk and invoke), the raw's body is reported directly so it can be
 * sliced out without decoding.
 *
 * State lives in a caller-allocated cf_decoder. A frame that arrives in
 * pieces is scanned once overall: cf_next() remembers how far into the
 * current frame it got, so the caller may append bytes, move the buffer or
 * drop consumed bytes in front of the frame between calls, as long as the
 * bytes of the current frame stay unchanged and `start` says where it begins.
 *
 * No allocation, no I/O, no Python: usable from C tests and fuzzers.
 */
#ifndef COCAINE_FRAME_H
#define COCAINE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Nesting limit: the top-level array is depth 1. A container header that
 * would open container number CF_MAX_DEPTH + 1 is an error, even an empty
 * one. This is msgpack.Unpacker's stack (MSGPACK_EMBED_STACK_SIZE). */
#define CF_MAX_DEPTH 1024

/* Return codes of cf_next(). Errors are negative and sticky. */
#define CF_FRAME 1          /* *out describes one complete, valid frame */
#define CF_NEED_DATA 0      /* the buffer ends inside the current frame */
#define CF_E_MALFORMED (-1) /* not msgpack (reserved byte 0xc1), or an ext value */
#define CF_E_FORMAT (-2)    /* msgpack, but not a frame; or a container as a map key */
#define CF_E_TOO_LARGE (-3) /* frame, array or map over its limit */
#define CF_E_DEPTH (-4)     /* nested deeper than CF_MAX_DEPTH */
#define CF_E_USAGE (-5)     /* bad call: start > len, or a NULL pointer (not sticky) */
/* Only with cf_init_skipping(): an oversize raw in a frame whose session is
 * known (native/README.md, rule 5c). Both end a cf_next_many() run. */
#define CF_OVERSIZE 2       /* *out: elem0, elem1, payload_len (the raw's declared
                               length); the caller drops buf[start:out->end] and the
                               raw's body after it, which the next calls skip */
#define CF_SKIPPED 3        /* the caller drops buf[start:out->end] (skipped bytes,
                               or the rest of the discarded frame) */
/* Only after cf_collect_payloads(): a frame's payload (the single raw of its
 * args, as CF_FAST_RAW) of at least the set size is still arriving. Both end a
 * cf_next_many() run. */
#define CF_PAYLOAD 4        /* *out: payload_len. The caller drops buf[start:out->end]
                               (the frame up to the payload), takes the next
                               payload_len bytes of the stream as the payload, and
                               calls again with buf[start] the first byte after it */
#define CF_PAYLOAD_FRAME 5  /* *out: the frame whose payload the caller took, with
                               start, end and headers_off counted from the byte after
                               the payload; args_off and args_len are 0 */

/* cf_frame.flags */
#define CF_HAS_HEADERS 1u /* element 3 is present (generation B only) */
#define CF_FAST_RAW 2u    /* args is exactly one raw: payload_off/payload_len hold its body */

/* One complete frame. Offsets index the buffer passed to cf_next(). All
 * fields are uint64_t so that an array of records can be read as a flat
 * array of integers. */
typedef struct cf_frame {
    uint64_t elem0;       /* element 0: A type id, B channel */
    uint64_t elem1;       /* element 1: A session, B type id */
    uint64_t start;       /* the frame is buf[start:end] */
    uint64_t end;
    uint64_t args_off;    /* element 2 (an array), msgpack-encoded */
    uint64_t args_len;
    uint64_t headers_off; /* element 3 (an array) when CF_HAS_HEADERS, else 0 */
    uint64_t headers_len;
    uint64_t nargs;       /* number of elements in args */
    uint64_t payload_off; /* body of the single raw when CF_FAST_RAW, else 0 */
    uint64_t payload_len;
    uint64_t flags;       /* CF_HAS_HEADERS | CF_FAST_RAW */
} cf_frame;

/* One open container. */
typedef struct cf_level {
    uint32_t remaining; /* array: elements left; map: entries left */
    uint8_t is_map;
    uint8_t want_value; /* map: the next item is the value of the current entry */
    uint8_t bad_key;    /* map: the current entry's key is an array or a map */
    uint8_t reserved;
} cf_level;

/* Resumable decoder state. Treat as opaque; sized for ffi.new / the stack. */
typedef struct cf_decoder {
    /* configuration */
    uint64_t max_frame_size;
    uint32_t max_map_len;
    int32_t exact_arity;
    /* sticky error, 0 while healthy */
    int32_t error;
    /* progress through the current frame */
    uint32_t depth;    /* open containers */
    uint64_t scanned;  /* bytes of the current frame consumed by complete tokens */
    uint64_t wanted;   /* bytes of the current frame needed before the scan can go on */
    /* shape of the current frame, collected while scanning */
    uint32_t top_is_array;
    uint32_t top_len;      /* declared elements of the top-level array */
    uint32_t elem_kind[4]; /* CF_K_* of elements 0..3 */
    uint32_t elem_count[4];/* element counts of elements 2 and 3 when arrays */
    uint64_t elem_value[2];/* values of elements 0 and 1 when non-negative ints */
    uint64_t elem_start[4];
    uint64_t elem_end[4];
    uint64_t payload_off;  /* relative to the frame start */
    uint64_t payload_len;
    uint32_t fast;
    uint32_t timestamp;    /* a valid timestamp ext was seen: rejected when the frame completes */
    int32_t skip_oversize; /* configuration: report and skip oversize raws (cf_init_skipping) */
    uint32_t discard;      /* 0, or how the current frame is read: reported oversize (1 skipping its
                              raw, 2 the rest), or its payload reported (3 the caller takes it,
                              4 the rest) */
    uint64_t skip;         /* bytes of the oversize raw's body still to skip */
    uint64_t collect_min;  /* configuration: smallest payload reported as CF_PAYLOAD (0: never) */
    uint64_t origin;       /* bytes of the current frame the caller took away (its
                              head and collected payload): buf[start] is this far into it */
    cf_level stack[CF_MAX_DEPTH];
} cf_decoder;

/* Prepare *d for a new stream. exact_arity: 1 for generation A (exactly 3
 * elements), 0 for generation B (3 or more). max_frame_size: largest frame
 * accepted, in bytes. max_map_len: largest map accepted, in entries. */
void cf_init(cf_decoder *d, int exact_arity, uint64_t max_frame_size, uint32_t max_map_len);

/* cf_init, then: a raw whose body would end past the window (rule 5b) in a
 * frame that is well-formed so far, with ids 0 and 1 known and the raw inside
 * element 2 or 3 (arrays), is not an error: cf_next returns CF_OVERSIZE once,
 * skips the raw's body as it arrives (CF_SKIPPED), scans the rest of the frame
 * with the usual rules and a fresh window, and drops the frame (CF_SKIPPED). */
void cf_init_skipping(cf_decoder *d, int exact_arity, uint64_t max_frame_size, uint32_t max_map_len);

/* After cf_init or cf_init_skipping: report a payload of at least min_size
 * bytes that is not all in the buffer yet as CF_PAYLOAD, so that the caller
 * can collect it where it will stay instead of buffering the frame. The frame
 * is still checked by every rule, at the same byte; the payload counts
 * towards max_frame_size. 0 turns it off (the default). */
void cf_collect_payloads(cf_decoder *d, uint64_t min_size);

/* Scan buf[start:len] for the next frame, which begins at buf[start].
 * Returns CF_FRAME (and fills *out), CF_NEED_DATA, or a negative error.
 * After CF_FRAME the next frame begins at out->end. After an error every call
 * returns the same error. */
int cf_next(cf_decoder *d, const uint8_t *buf, size_t len, size_t start, cf_frame *out);

/* Up to max_frames calls of cf_next() in one: fills out[0..n) and returns n.
 * *status receives the code that ended the run: CF_FRAME when max_frames
 * frames were found, otherwise CF_NEED_DATA or the error. */
size_t cf_next_many(cf_decoder *d, const uint8_t *buf, size_t len, size_t start, cf_frame *out,
                    size_t max_frames, int *status);

/* After CF_NEED_DATA: how many bytes of the current frame (counted from its
 * start) must be in the buffer before cf_next() can make progress. While a
 * raw body is awaited this is where the body ends, so a caller may collect
 * that many bytes before calling again. Always at least one more than what
 * was scanned; cf_next() may still answer CF_E_TOO_LARGE before that. */
uint64_t cf_wanted(const cf_decoder *d);

/* A short, static, English name for a return code. */
const char *cf_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif /* COCAINE_FRAME_H */
