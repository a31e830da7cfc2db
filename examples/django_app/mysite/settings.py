"""Settings of a minimal Django project: no database, no admin, a few views."""

import os

# "mysite" when deployed, "examples.django_app.mysite" when imported from the repo root
_PACKAGE = __name__.rpartition(".")[0]

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = f"{_PACKAGE}.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
DEFAULT_CHARSET = "utf-8"
