"""The layers: every project module's imports (read from its source, deferred ones included) and every
model relation (Django's _meta, so string foreign keys count) go down or sideways, never up, and form no
circle. The layers, bottom first:

    platform   aihub settings and shared helpers, deploy's probes and metrics
    catalogue  chat/catalogue/: models and prices, the per-process copy
    accounts   users and API keys
    billing    plans, subscriptions, admission, metering, usage figures
    gateway    chat/gateway/: providers, router, Generation
    web        what serves people and programs: conversations, views, sockets, the APIs, admin,
               urls, forms, commands (and the operator pages that show several layers at once)
    tests      tests, test helpers and benchmarks
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["platform", "catalogue", "accounts", "billing", "gateway", "web", "tests"]
PROJECT_PACKAGES = {"aihub", "accounts", "billing", "chat", "deploy", "bench"}
# Modules of any app that serve requests or wire the app up: the top layer.
WEB_MODULES = {"admin", "apps", "asgi", "wsgi", "urls", "routing", "consumers", "middleware", "context_processors"}
WEB_PACKAGES = {"api", "management", "templatetags"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    name = parts[-1]
    if parts[0] in {"bench", "conftest"} or "tests" in parts or module in {"aihub.testing", "aihub.test_environment"}:
        return "tests"
    if parts[:2] == ["chat", "catalogue"]:
        return "catalogue"
    if parts[:2] == ["chat", "gateway"]:
        return "gateway"
    if name in WEB_MODULES or name.startswith("views") or name.endswith("forms") or WEB_PACKAGES & set(parts):
        return "web"
    return {"aihub": "platform", "deploy": "platform", "accounts": "accounts", "billing": "billing"}.get(
        parts[0], "web"
    )


def project_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] not in PROJECT_PACKAGES | {"conftest.py"} or "migrations" in relative.parts:
            continue
        parts = list(relative.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its source (a package's submodule when named)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return {name for name in found if not _is_parent_package(name, found)}


def _is_parent_package(name: str, found: set[str]) -> bool:
    """`from chat.catalogue import lookup` names chat.catalogue and chat.catalogue.lookup: the submodule counts."""
    return any(other.startswith(name + ".") for other in found)


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {module: imports_of(module, path, set(modules)) for module, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(edges) -> list[str]:
    return [
        f"{source} ({layer_of(source)}) -> {target} ({layer_of(target)})"
        for source, target in edges
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(source))
    ]


def model_relations() -> dict[str, set[str]]:
    """Model module -> the modules of the models its fields point at (project models only)."""
    graph: dict[str, set[str]] = {}
    for model in apps.get_models():
        source = model.__module__
        if source.split(".")[0] not in PROJECT_PACKAGES:
            continue
        for field in model._meta.get_fields(include_hidden=True):
            if field.is_relation and not field.auto_created and field.related_model is not None:
                target = field.related_model.__module__
                if target.split(".")[0] in PROJECT_PACKAGES and field.related_model is not model:
                    graph.setdefault(f"{source}.{model.__name__}", set()).add(
                        f"{target}.{field.related_model.__name__}"
                    )
    return graph


def test_the_walk_sees_the_whole_project(import_graph):
    assert {"chat.catalogue.lookup", "chat.gateway.generation", "billing.metering", "chat.consumers"} <= set(
        import_graph
    )
    assert "billing.models" in import_graph["billing.metering"]
    # A deferred import counts like any other.
    assert layer_of("chat.gateway.providers.local") == "gateway"


def test_no_import_goes_up_a_layer(import_graph):
    assert upward((source, target) for source, targets in import_graph.items() for target in targets) == []


def test_billings_tests_reach_chat_only_for_the_catalogue(import_graph):
    """Billing is tested through its own functions: a test that runs a request through the gateway is the
    gateway's test (chat/tests), so billing's tests stand without the layers above them."""
    reached = {
        f"{source} -> {target}"
        for source, targets in import_graph.items()
        if source.startswith("billing.tests")
        for target in targets
        if target.split(".")[0] == "chat" and layer_of(target) != "catalogue"
    }
    assert reached == set()


def test_imports_form_no_circle(import_graph):
    assert circles(import_graph) == []


def test_no_model_relation_goes_up_a_layer():
    relations = model_relations()
    assert "chat.catalogue.models.AIModel" in relations["billing.models.UsageRecord"]
    edges = [(s.rpartition(".")[0], t.rpartition(".")[0]) for s, targets in relations.items() for t in targets]
    assert upward(edges) == []


def test_model_relations_form_no_circle():
    assert circles(model_relations()) == []


def test_the_checks_catch_what_they_are_for():
    assert upward([("billing.metering", "chat.models")]) == ["billing.metering (billing) -> chat.models (web)"]
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
