"""Only what pyproject.toml cannot say yet: the cffi extension (native/)."""

from setuptools import setup

setup(cffi_modules=["native/build_ffi.py:ffibuilder"])
