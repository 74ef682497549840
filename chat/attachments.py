"""Files in chat: what may be uploaded (by type and by the plan's limits), the text of documents, and
what a message with attachments sends upstream (documents as text, images as image parts).

Documents: plain text, Markdown, code, CSV, JSON (decoded as UTF-8), PDF (pypdf), DOCX (python-docx).
Images: PNG, JPEG, WebP, GIF, recognised by their first bytes (not by the name or the browser's word),
and only for models that take images. Anything else, or a file over the plan's limits, is refused
before anything is stored."""

from __future__ import annotations

import io
import os
from datetime import timedelta

from django.core.files.base import ContentFile
from django.db.models import Sum
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.template.defaultfilters import filesizeformat
from django.utils.timezone import now

from aihub.inputs import whole_number
from aihub.message_content import IMAGE_TOKENS, data_url, image_part
from billing.metering import count_text_tokens
from billing.subscriptions import current_subscription
from chat.gateway.router import candidates_for

from .models import AIModel, Attachment, Message

# Documents read as UTF-8 text, by extension.
TEXT_EXTENSIONS = {
    ".txt", ".md", ".markdown", ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml", ".yml", ".toml", ".ini",
    ".log", ".html", ".htm", ".css", ".svg", ".py", ".js", ".ts", ".jsx", ".tsx", ".java", ".kt", ".c", ".h",
    ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".swift", ".sh", ".sql", ".r", ".lua", ".pl",
}  # fmt: skip
DOCUMENT_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
# Images by their first bytes.
IMAGE_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
]
MAX_TEXT_CHARS = 400_000
UNSENT_KEPT = timedelta(days=1)
ACCEPTED = "text, Markdown, code, CSV, JSON, PDF, DOCX, and PNG, JPEG, WebP, GIF images"


class UploadRefused(Exception):
    """An upload or a send with attachments that is not allowed; str() says why, for the person."""


def _mb(size: int) -> str:
    return str(filesizeformat(size)).replace("\xa0", " ")


def image_type(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for signature, kind in IMAGE_SIGNATURES if head.startswith(signature)), None)


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        return "\n\n".join((page.extract_text() or "").strip() for page in reader.pages).strip()
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise UploadRefused(f"That PDF could not be read ({type(exc).__name__}).") from None


def _docx_text(data: bytes) -> str:
    import zipfile

    from docx import Document

    try:
        document = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UploadRefused(f"That DOCX file could not be read ({type(exc).__name__}).") from None
    return "\n".join(paragraph.text for paragraph in document.paragraphs).strip()


def document_text(name: str, data: bytes) -> tuple[str, str]:
    """(content type, text) of a document; UploadRefused for other files."""
    extension = os.path.splitext(name)[1].lower()
    if extension == ".pdf":
        text, content_type = _pdf_text(data), DOCUMENT_TYPES[".pdf"]
    elif extension == ".docx":
        text, content_type = _docx_text(data), DOCUMENT_TYPES[".docx"]
    elif extension in TEXT_EXTENSIONS:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UploadRefused(f"{name} is not UTF-8 text.") from None
        content_type = "text/plain"
    else:
        raise UploadRefused(f"{name}: this kind of file is not accepted. Accepted: {ACCEPTED}.")
    if not text.strip():
        raise UploadRefused(f"{name} has no text to read.")
    if len(text) > MAX_TEXT_CHARS:
        raise UploadRefused(f"{name} has more than {MAX_TEXT_CHARS:,} characters of text.")
    return content_type, text


def takes_images(model: AIModel | None) -> bool:
    """'auto' (None) takes images when one of its candidates does (free, active, its provider configured:
    the generation picks among those; a vision model of an unconfigured provider answered 502)."""
    if model is not None:
        return model.supports_images
    return any(m.supports_images for m in candidates_for(None))


def _refuse_image_for(model: AIModel | None, name: str) -> None:
    if not takes_images(model):
        label = model.name if model is not None else "auto (no free model takes images)"
        raise UploadRefused(f"{name} is an image, and {label} takes text only. Pick a model that takes images.")


def store_upload(user, uploaded, model: AIModel | None) -> Attachment:
    """Check and store one uploaded file (a Django UploadedFile) for `user`, to be sent to `model`."""
    plan = current_subscription(user).plan
    name = os.path.basename(uploaded.name or "file")[:255]
    if uploaded.size > plan.max_upload_bytes:
        raise UploadRefused(
            f"{name} is {_mb(uploaded.size)}; the {plan.name} plan takes files up to {_mb(plan.max_upload_bytes)}."
        )
    # Uploads never sent (the page was closed first) are dropped after a day: they stop taking room.
    for stale in Attachment.objects.filter(user=user, message__isnull=True, created_at__lt=now() - UNSENT_KEPT):
        stale.delete()  # one by one: each takes its stored file with it
    if plan.upload_storage_bytes is not None:
        stored = Attachment.objects.filter(user=user).aggregate(total=Sum("size"))["total"] or 0
        if stored + uploaded.size > plan.upload_storage_bytes:
            raise UploadRefused(
                f"Your uploads would take more than the {plan.name} plan's {_mb(plan.upload_storage_bytes)} "
                f"({_mb(stored)} used). Delete conversations with files you no longer need."
            )
    data = uploaded.read()
    content_type = image_type(data[:16])
    if content_type is not None:
        _refuse_image_for(model, name)
        kind, text, tokens = Attachment.Kind.IMAGE, "", IMAGE_TOKENS
    else:
        content_type, text = document_text(name, data)
        kind, tokens = Attachment.Kind.DOCUMENT, count_text_tokens(document_block(name, text))
    attachment = Attachment(
        user=user, name=name, content_type=content_type, size=len(data), kind=kind, text=text, tokens=tokens
    )
    attachment.file.save(name, ContentFile(data), save=False)  # a random path (models.attachment_path)
    attachment.save()
    return attachment


def to_send(user, ids: list, model: AIModel | None) -> list[Attachment]:
    """The user's own unsent uploads of those ids, checked against the plan and the model. Sync."""
    numbers = {whole_number(str(i)) for i in ids}
    if not numbers:
        return []
    wanted = {number for number in numbers if number is not None}
    if len(wanted) != len(numbers):  # not an id at all: as refused as a file that is gone
        raise UploadRefused("An attached file is gone (removed or already sent). Attach it again.")
    found = list(Attachment.objects.filter(user=user, message__isnull=True, pk__in=wanted))
    if len(found) != len(wanted):
        raise UploadRefused("An attached file is gone (removed or already sent). Attach it again.")
    plan = current_subscription(user).plan
    if len(found) > plan.max_files_per_message:
        raise UploadRefused(f"The {plan.name} plan takes up to {plan.max_files_per_message} files a message.")
    for attachment in found:
        if attachment.kind == Attachment.Kind.IMAGE:
            _refuse_image_for(model, attachment.name)
    return found


def attach(attachments: list[Attachment], message: Message) -> None:
    Attachment.objects.filter(pk__in=[a.pk for a in attachments]).update(message=message)


def carry_over(original: Message, edit: Message) -> None:
    """An edited message keeps the files its original was sent with: rows of its own on the same stored
    files (a stored file goes with the last row that holds it: delete_stored_file)."""
    copies = list(original.attachments.all())
    for attachment in copies:
        attachment.pk, attachment.message = None, edit
    Attachment.objects.bulk_create(copies)


def document_block(name: str, text: str) -> str:
    """A document as it follows its message in the prompt (its chip counts these tokens: what it adds)."""
    return f"\n\n--- Attached file: {name} ---\n{text}\n--- End of {name} ---"


def with_files(entry: dict, files: list[Attachment], model: AIModel | None) -> dict:
    """A message as sent with its files: documents as text after it, images as image parts (or, for a
    text-only model, their names)."""
    if not files:
        return entry
    images_allowed = model is None or model.supports_images
    text, images = entry["content"], []
    for attachment in files:
        if attachment.kind == Attachment.Kind.DOCUMENT:
            text += document_block(attachment.name, attachment.text)
        elif images_allowed:
            with attachment.file.open("rb") as image:
                images.append(image_part(data_url(attachment.content_type, image.read())))
        else:
            text += f"\n\n[Attached image {attachment.name}: not shown to this text-only model]"
    content = [{"type": "text", "text": text}, *images] if images else text
    return {**entry, "content": content}


def with_attachments(history: list[dict], message_ids: list[int], model: AIModel | None) -> list[dict]:
    """The history (one entry per id of `message_ids`) with each message's attachments (with_files). One query."""
    found: dict[int, list[Attachment]] = {}
    for attachment in Attachment.objects.filter(message_id__in=message_ids):
        assert attachment.message_id is not None  # filtered by message
        found.setdefault(attachment.message_id, []).append(attachment)
    if not found:
        return history
    return [
        with_files(entry, found.get(message_id, []), model)
        for entry, message_id in zip(history, message_ids, strict=True)
    ]


@receiver(post_delete, sender=Attachment)
def delete_stored_file(sender, instance: Attachment, **kwargs):
    """The stored file goes with its row (deleted with its message, conversation or user), or with the last
    of the rows that share it (an edited message's files: carry_over)."""
    if instance.file and not Attachment.objects.filter(file=instance.file.name).exists():
        instance.file.delete(save=False)
