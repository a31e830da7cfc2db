import hashlib
import json

from django.http import (
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotModified,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods


def hello(request):
    return HttpResponse("Hello, world!\n", content_type="text/plain")


@require_http_methods(["GET", "HEAD", "DELETE"])
def item(request, item_id):
    if request.method == "DELETE":
        return HttpResponse(status=204)
    return JsonResponse({"id": item_id, "q": request.GET.get("q"), "tags": request.GET.getlist("tag")})


@csrf_exempt
@require_http_methods(["POST"])
def echo_json(request):
    try:
        data = json.loads(request.body)
    except ValueError:
        return HttpResponseBadRequest("expected a JSON body")
    return JsonResponse({"received": data, "type": type(data).__name__}, status=201)


@csrf_exempt
@require_http_methods(["POST"])
def form(request):
    return JsonResponse({"form": {k: request.POST.getlist(k) for k in request.POST}})


@csrf_exempt
@require_http_methods(["POST"])
def upload(request):
    digest = hashlib.sha256()
    size = 0
    while chunk := request.read(64 * 1024):
        digest.update(chunk)
        size += len(chunk)
    return JsonResponse({"size": size, "sha256": digest.hexdigest()})


def headers(request):
    return JsonResponse(
        {
            "accept": request.headers.get("Accept"),
            "x_multi": request.headers.get("X-Multi"),
            "cookies": dict(request.COOKIES),
            "host": request.get_host(),
            "scheme": request.scheme,
            "path": request.path,
        }
    )


def stream(request):
    count = int(request.GET.get("n", 5))
    return StreamingHttpResponse((f"line {i}\n" for i in range(count)), content_type="text/plain")


def cached(request):
    etag = '"v1"'
    if request.headers.get("If-None-Match") == etag:
        response = HttpResponseNotModified()
        response["ETag"] = etag
        return response
    response = HttpResponse("fresh\n", content_type="text/plain")
    response["ETag"] = etag
    return response


def unicode_path(request, name):
    return JsonResponse({"name": name, "path": request.path})


def cookie(request):
    response = JsonResponse({"ok": True})
    response.set_cookie("session", "abc123", httponly=True)
    response.set_cookie("theme", "dark")
    return response


def boom(request):
    raise RuntimeError("boom")
