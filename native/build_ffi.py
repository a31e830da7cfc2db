"""cffi build script for the native frame scanner (out-of-line API mode).

``setup.py`` runs it through ``cffi_modules=["native/build_ffi.py:ffibuilder"]``
during ``pip install`` (editable or not); it produces the extension module
``cocaine_http._native``. For a throwaway local build::

    python native/build_ffi.py        # writes cocaine_http/_native.*.so

The ``cdef`` below is the part of ``cocaine_frame.h`` that Python needs.
``cf_decoder`` is declared opaque (``...;``): the C compiler supplies its
size, so the two can never disagree.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))

CDEF = """
#define CF_MAX_DEPTH ...
#define CF_FRAME ...
#define CF_NEED_DATA ...
#define CF_E_MALFORMED ...
#define CF_E_FORMAT ...
#define CF_E_TOO_LARGE ...
#define CF_E_DEPTH ...
#define CF_E_USAGE ...
#define CF_OVERSIZE ...
#define CF_SKIPPED ...
#define CF_PAYLOAD ...
#define CF_PAYLOAD_FRAME ...
#define CF_HAS_HEADERS ...
#define CF_FAST_RAW ...

typedef struct cf_frame {
    uint64_t elem0;
    uint64_t elem1;
    uint64_t start;
    uint64_t end;
    uint64_t args_off;
    uint64_t args_len;
    uint64_t headers_off;
    uint64_t headers_len;
    uint64_t nargs;
    uint64_t payload_off;
    uint64_t payload_len;
    uint64_t flags;
} cf_frame;

typedef struct cf_decoder { ...; } cf_decoder;

void cf_init(cf_decoder *d, int exact_arity, uint64_t max_frame_size, uint32_t max_map_len);
void cf_init_skipping(cf_decoder *d, int exact_arity, uint64_t max_frame_size, uint32_t max_map_len);
int cf_next(cf_decoder *d, const uint8_t *buf, size_t len, size_t start, cf_frame *out);
size_t cf_next_many(cf_decoder *d, const uint8_t *buf, size_t len, size_t start, cf_frame *out,
                    size_t max_frames, int *status);
void cf_collect_payloads(cf_decoder *d, uint64_t min_size);
uint64_t cf_wanted(const cf_decoder *d);
const char *cf_strerror(int code);
"""


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2", "/W3"]
    return ["-O2", "-Wall", "-Wextra", "-Wshadow", "-Wstrict-prototypes", "-std=c99"]


ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "cocaine_http._native",
    '#include "cocaine_frame.h"',
    sources=["native/cocaine_frame.c"],
    include_dirs=["native"],
    extra_compile_args=_compile_args(),
    py_limited_api=True,
)

if __name__ == "__main__":
    # Paths in set_source are relative to the repository root.
    os.chdir(os.path.dirname(HERE))
    ffibuilder.compile(tmpdir=".", verbose=True)
