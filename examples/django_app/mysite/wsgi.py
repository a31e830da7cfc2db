"""WSGI entry point: ``gunicorn mysite.wsgi:application`` or ``cocaine-http mysite.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{__package__}.settings")

application = get_wsgi_application()
