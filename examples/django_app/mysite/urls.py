from django.urls import path

from . import views

urlpatterns = [
    path("", views.hello),
    path("items/<int:item_id>", views.item),
    path("json", views.echo_json),
    path("form", views.form),
    path("upload", views.upload),
    path("headers", views.headers),
    path("stream", views.stream),
    path("cached", views.cached),
    path("unicode/<str:name>", views.unicode_path),
    path("cookie", views.cookie),
    path("boom", views.boom),
]
