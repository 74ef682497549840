from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"

    def ready(self):
        from chat import (
            attachments,  # noqa: F401  (deletes an attachment's file with its row)
            personal_data,  # noqa: F401  (a person's conversations in their export and deletion)
        )
        from chat.catalogue import lookup  # noqa: F401  (connects the catalogue's change signals)
