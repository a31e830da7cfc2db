"""Unmodified WSGI and ASGI apps as worker handlers (see :mod:`.wsgi`, :mod:`.asgi`, :mod:`.detect`)."""
