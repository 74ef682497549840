"""Uploading a file for the next message, removing it before sending, and serving it to its owner."""

from __future__ import annotations

from django.http import FileResponse, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from . import attachments
from .catalogue.lookup import UnknownModel, active_model
from .models import Attachment

# Only these are ever shown in the browser; anything else (HTML, SVG, text...) is a download.
INLINE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}


def _refused(request, message: str, status: int = 422) -> HttpResponse:
    return render(request, "chat/_attachment_error.html", {"error": message}, status=status)


@require_POST
def upload(request):
    """POST /chat/attachments/ (multipart: file, model): the chip of the stored file, or why not (422)."""
    uploaded = request.FILES.get("file")
    if uploaded is None:
        return _refused(request, "Choose a file to attach.", 400)
    try:
        model = active_model(request.POST.get("model", ""))
        attachment = attachments.store_upload(request.user, uploaded, model)
    except (attachments.UploadRefused, UnknownModel) as exc:
        return _refused(request, str(exc))
    return render(request, "chat/_attachment_chip.html", {"attachment": attachment})


@require_POST
def remove(request, pk: int):
    """An upload not sent yet, taken off the composer (a sent one goes with its message)."""
    get_object_or_404(Attachment, pk=pk, user=request.user, message__isnull=True).delete()
    return HttpResponse("")


@require_GET
def attachment(request, pk: int):
    """The file, to its owner only (anyone else: 404)."""
    return file_response(get_object_or_404(Attachment, pk=pk, user=request.user))


def file_response(found: Attachment) -> FileResponse:
    """Images of the accepted types are shown; everything else, HTML and SVG included, is sent as a
    download of plain bytes, never rendered by the browser."""
    inline = found.content_type in INLINE_TYPES
    response = FileResponse(
        found.file.open("rb"),
        as_attachment=not inline,
        filename=found.name,
        content_type=found.content_type if inline else "application/octet-stream",
    )
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
