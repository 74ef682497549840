"""Provider keys stored in the database, encrypted at rest with Fernet (cryptography's authenticated
symmetric encryption). The key comes from the environment: PROVIDER_KEYS_SECRET, one or more
comma-separated Fernet keys; the first encrypts, all decrypt (add a new key first to rotate)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class ProviderKeysUnavailable(Exception):
    """No PROVIDER_KEYS_SECRET, or it cannot read a stored key: say what to do."""


def _fernet() -> MultiFernet:
    keys = [key.strip() for key in settings.PROVIDER_KEYS_SECRET.split(",") if key.strip()]
    if not keys:
        raise ProviderKeysUnavailable(
            "Set PROVIDER_KEYS_SECRET to store provider keys: "
            'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        )
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ProviderKeysUnavailable(f"PROVIDER_KEYS_SECRET is not a valid Fernet key: {exc}") from exc


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ProviderKeysUnavailable("A stored provider key cannot be read with PROVIDER_KEYS_SECRET.") from exc
