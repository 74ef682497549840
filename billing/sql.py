"""Rows read and written as plain SQL on the hot paths (admission, settlement), where the ORM's insert compiler costs
more than the write itself (0.2 ms a call) and several writes go to the database in one round trip."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from django.db import connection, models


def insert_returning_id(instance: models.Model) -> tuple[str, list[Any]]:
    """`instance`'s INSERT, returning its id, with the values prepared as the ORM's insert prepares them
    (defaults, auto_now_add)."""
    fields = _insert_fields(type(instance))
    return _insert_sql(type(instance)), [f.get_db_prep_save(f.pre_save(instance, True), connection) for f in fields]


def saved(instance: models.Model, pk: int) -> models.Model:
    """`instance` as the ORM leaves a row it has just inserted."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias
    return instance


@cache
def _insert_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


@cache
def _insert_sql(model: type[models.Model]) -> str:
    meta = model._meta
    assert meta.pk is not None
    columns = ", ".join(f'"{f.column}"' for f in _insert_fields(model))
    values = ", ".join(["%s"] * len(_insert_fields(model)))
    return f'INSERT INTO "{meta.db_table}" ({columns}) VALUES ({values}) RETURNING "{meta.pk.column}"'


def converted(row: tuple[Any, ...], fields: tuple[models.Field[Any, Any], ...]) -> list[Any]:
    """A row read as plain SQL, converted as the ORM converts its columns (SQLite returns dates as text)."""
    return [convert(value, field) for value, field in zip(row, fields, strict=True)]


def convert(value: Any, field: models.Field[Any, Any]) -> Any:
    column, converters = _converters(field)
    for converter in converters:
        value = converter(value, column, connection)
    return value


@cache
def _converters(field: models.Field[Any, Any]) -> tuple[Any, list[Callable[..., Any]]]:
    """What the ORM applies to the field's column (the backend's converters, then the field's own): the same
    on every connection of the process."""
    column = field.get_col(field.model._meta.db_table)
    return column, connection.ops.get_db_converters(column) + field.get_db_converters(connection)
