"""The chat page when its socket is closed by the server with a code of ours: it says why and stays
closed (a refused socket used to reach the browser as a bare 1006 and was retried forever)."""

from __future__ import annotations

import pytest

from aihub.testing import chromium_page, session_key_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

STATUS = "document.getElementById('connection-status')"


def test_logging_out_in_another_tab_ends_the_chat_with_its_reason(asgi_server, chromium_path, user):
    with chromium_page(
        chromium_path, viewport={"width": 1280, "height": 800}, base_url=asgi_server, session_key=session_key_for(user)
    ) as page:
        sockets = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.goto(f"{page.base}/chat/")
        page.wait_for_function(f"() => {STATUS}.dataset.state === 'open'")
        other_tab = page.context.new_page()
        other_tab.goto(f"{page.base}/account/")
        other_tab.get_by_role("button", name="Log out").click()
        other_tab.wait_for_url("**/")
        page.wait_for_function(f"() => {STATUS}.textContent.includes('Your session has ended: log in again.')")
        page.wait_for_timeout(2000)  # longer than htmx's first reconnect delay
        assert len(sockets) == 1  # no reconnecting
        assert page.evaluate(f"() => {STATUS}.dataset.state") == "closed"
        assert page.problems == []
