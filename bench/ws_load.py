"""Chat sockets under load: N authenticated chat websockets, one message each, every reply streamed, saved and metered.

Three steps (bench/run_ws_load.sh runs them in order, with the server and the fake upstream):

    python bench/ws_load.py setup --users U --out sessions.json       # project venv (Django): plan, users, sessions
    python bench/ws_load.py run --sessions sessions.json --n N ...     # bench venv (aiohttp): the sockets
    python bench/ws_load.py check --sessions sessions.json --n N       # project venv: the replies in the database

setup puts U users on a plan with every limit set (token quota, credit, requests and tokens per minute, parallel
streams), each limit large enough for the run, and logs each in (a real session, its cookie written out). run
opens N sockets to /ws/chat/new/ (users taken in turn, so that no user has more sockets than the plan's parallel
streams), sends one message on each at once (or one after another with --sequential), and records per socket the
time to first token (send -> first frame with reply text) and whether its reply ended complete; with --pid it
reports the server processes' CPU (utime + stime from /proc) over the replies, per reply. --upstream-ttft also
times the fake upstream's own first token directly (the same request, one after another), to subtract. check
counts the replies the run's users got in the database: complete, with their text, each with its usage row.

Everything stays on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import signal
import statistics
import sys
import time
from pathlib import Path

PLAN_SLUG = "bench-every-limit"
EMAIL = "ws-load-{}@bench.local"
# Large enough never to refuse a run, small enough to be real limits that admission has to check.
PLAN_LIMITS = {
    "monthly_token_quota": 10_000_000_000,
    "monthly_credit_quota": 1_000_000,
    "requests_per_minute": 100_000,
    "tokens_per_minute": 1_000_000_000,
    "max_concurrent_streams": 1_000,
}
MESSAGE = "Say something in fifty words."
ERROR_FRAME = '<div id="chat-error" class="chat-error" role="alert" hx-swap-oob="outerHTML">'
REPLY_END = re.compile(r'class="message assistant status-(\w+)"')


def _django():
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")
    import django

    django.setup()


def setup(args) -> None:
    _django()
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore as DbStore

    from billing.models import Plan
    from billing.subscriptions import start_subscription

    plan, _ = Plan.objects.update_or_create(
        slug=PLAN_SLUG, defaults={"name": "Bench, every limit", "monthly_price": 1, "is_public": False, **PLAN_LIMITS}
    )
    store = getattr(import_module(settings.SESSION_ENGINE), "SessionStore", DbStore)
    users = get_user_model().objects
    sessions = []
    for i in range(args.users):
        user, created = users.get_or_create(email=EMAIL.format(i))
        if created:
            user.set_unusable_password()
            user.save()
        start_subscription(user, plan)
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        sessions.append({"user_id": user.pk, "session": session.session_key})
    Path(args.out).write_text(
        json.dumps({"cookie": settings.SESSION_COOKIE_NAME, "plan": PLAN_SLUG, "users": sessions}, indent=1)
    )
    print(f"{len(sessions)} users on plan {PLAN_SLUG} with {PLAN_LIMITS}", file=sys.stderr)


def check(args) -> None:
    """The replies of the run's users since --since: all complete with their text, each with its usage row."""
    _django()
    from collections import Counter
    from datetime import UTC, datetime

    from billing.models import UsageRecord
    from chat.models import Message

    user_ids = [u["user_id"] for u in json.loads(Path(args.sessions).read_text())["users"]]
    since = datetime.fromtimestamp(args.since, UTC)
    replies = Message.objects.filter(
        conversation__user_id__in=user_ids, role=Message.Role.ASSISTANT, created_at__gte=since
    )
    by_status = {s: replies.filter(status=s).count() for s in Message.Status.values}
    complete = replies.filter(status=Message.Status.COMPLETE)
    usage = UsageRecord.objects.filter(user_id__in=user_ids, created_at__gte=since)
    result = {
        "replies": replies.count(),
        "by_status": by_status,
        "complete_with_text": complete.exclude(content="").count(),
        # the reply's own usage row, complete: written under the reply's request id
        "complete_with_usage_row": complete.filter(usage__status=UsageRecord.Status.COMPLETE).count(),
        "usage_rows": dict(Counter(usage.values_list("purpose", flat=True))),
        "errors": dict(Counter(replies.exclude(error="").values_list("error", flat=True)).most_common(3)),
    }
    result["all_saved"] = (
        result["complete_with_text"] == result["complete_with_usage_row"] == result["replies"] == args.n
    )
    print(json.dumps(result))
    if not result["all_saved"]:
        sys.exit(1)


# The load itself (bench venv: aiohttp).


def _cpu_ms(pids: list[int]) -> float:
    """utime + stime of the processes and their waited-for children, in ms."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


class Socket:
    def __init__(self, session, ws_url: str, origin: str, cookie: str):
        self.session, self.ws_url, self.origin, self.cookie = session, ws_url, origin, cookie
        self.ws = None
        self.sent = self.first_token = self.ended = None
        self.complete = False
        self.frames = 0
        self.error = ""

    async def connect(self) -> None:
        self.ws = await self.session.ws_connect(
            self.ws_url, headers={"Origin": self.origin, "Cookie": self.cookie}, autoping=True, max_msg_size=0
        )

    async def exchange(self, model: str, timeout: float) -> None:
        import aiohttp

        try:
            self.sent = time.perf_counter()
            await self.ws.send_str(json.dumps({"action": "send", "message": MESSAGE, "model": model}))
            async with asyncio.timeout(timeout):
                async for frame in self.ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        self.error = f"socket {frame.type.name.lower()}"
                        return
                    self.frames += 1
                    text = frame.data
                    if os.environ.get("WS_LOAD_TRACE"):
                        print(
                            round((time.perf_counter() - self.sent) * 1000, 1),
                            text[:160].replace("\n", " "),
                            file=sys.stderr,
                        )
                    if self.first_token is None and text.startswith('<span id="reply-'):  # a delta
                        self.first_token = time.perf_counter()
                    if text.startswith(ERROR_FRAME) and not text.startswith(ERROR_FRAME + "</"):  # chat/_error.html
                        self.error = text[:200]
                        return
                    ended = REPLY_END.search(text)  # chat/_exchange_end.html
                    if ended and ended.group(1) != "streaming":
                        self.ended = time.perf_counter()
                        self.complete = ended.group(1) == "complete"
                        return
        except TimeoutError:
            self.error = "timed out"
        except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
            self.error = repr(exc)


async def _upstream_ttft(upstream: str, model: str, count: int) -> list[float]:
    """The fake upstream's own time to first token: the same streaming request, straight to it."""
    import aiohttp

    out = []
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": MESSAGE}]}
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            start = time.perf_counter()
            async with session.post(f"{upstream}/v1/chat/completions", json=body) as resp:
                async for line in resp.content:
                    if line.startswith(b"data: ") and b'"content":"' in line:
                        out.append((time.perf_counter() - start) * 1000)
                        break
                await resp.read()
    return out


async def _run(args) -> dict:
    import aiohttp

    sessions = json.loads(Path(args.sessions).read_text())
    users = sessions["users"]
    if args.n > len(users) * PLAN_LIMITS["max_concurrent_streams"]:
        raise SystemExit("more sockets than the users' parallel streams allow: set up more users")
    origin = f"http://{args.host}:{args.port}"
    ws_url = f"ws://{args.host}:{args.port}/ws/chat/new/"
    connector = aiohttp.TCPConnector(limit=0)
    result: dict = {"n": args.n, "sequential": args.sequential, "users": min(len(users), args.n)}
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None)) as session:
        sockets = [
            Socket(session, ws_url, origin, f"{sessions['cookie']}={users[i % len(users)]['session']}")
            for i in range(args.n)
        ]
        started = time.time()
        if args.sequential:  # one socket at a time: the added time to first token, nothing queued
            cpu_before = _cpu_ms(args.pid) if args.pid else None
            for sock in sockets:
                await sock.connect()
                await sock.exchange(args.model, args.timeout)
                await sock.ws.close()
            cpu_after = _cpu_ms(args.pid) if args.pid else None
        else:
            connect_start = time.perf_counter()
            for chunk in range(0, len(sockets), 100):  # the handshakes in batches: the listen backlog is finite
                await asyncio.gather(*(s.connect() for s in sockets[chunk : chunk + 100]))
            result["connect_s"] = round(time.perf_counter() - connect_start, 2)
            await asyncio.sleep(0.5)  # the last handshakes' work (session, groups) done before the CPU is read
            cpu_before = _cpu_ms(args.pid) if args.pid else None
            replies_start = time.perf_counter()
            exchanges = asyncio.gather(*(s.exchange(args.model, args.timeout) for s in sockets))
            if args.sigterm_after is not None:  # the server asked to stop with these replies in flight
                await asyncio.sleep(args.sigterm_after)
                result["in_flight_at_sigterm"] = sum(s.ended is None and not s.error for s in sockets)
                os.kill(args.pid[0], signal.SIGTERM)
            await exchanges
            result["replies_s"] = round(time.perf_counter() - replies_start, 2)
            await asyncio.sleep(args.settle)  # what follows a reply's end (a title) is part of its cost
            cpu_after = _cpu_ms(args.pid) if args.pid and args.sigterm_after is None else None
            await asyncio.gather(*(s.ws.close() for s in sockets), return_exceptions=True)
        result["since"] = started
    ttft = [(s.first_token - s.sent) * 1000 for s in sockets if s.first_token]
    result.update(
        complete=sum(s.complete for s in sockets),
        errors=sorted({s.error for s in sockets if s.error})[:5],
        error_count=sum(bool(s.error) for s in sockets),
        ttft_p50_ms=_pct(ttft, 50),
        ttft_p99_ms=_pct(ttft, 99),
        ttft_max_ms=max(ttft) if ttft else None,
        reply_p50_ms=_pct([(s.ended - s.sent) * 1000 for s in sockets if s.ended], 50),
        frames_per_reply=statistics.mean(s.frames for s in sockets),
    )
    if cpu_after is not None:
        result["server_cpu_ms"] = round(cpu_after - cpu_before, 1)
        result["cpu_ms_per_reply"] = round((cpu_after - cpu_before) / max(1, result["complete"]), 2)
    if args.upstream_ttft:
        direct = await _upstream_ttft(args.upstream, args.model.split("/", 1)[-1], args.upstream_ttft)
        result["upstream_ttft_p50_ms"] = _pct(direct, 50)
        if ttft:
            result["added_ttft_p50_ms"] = round(_pct(ttft, 50) - _pct(direct, 50), 2)
    for key, value in list(result.items()):
        if isinstance(value, float):
            result[key] = round(value, 2)
    return result


def run(args) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, args.n + 100):  # a socket each
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.n * 2 + 100)), hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_run(args))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("setup")
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=setup)
    p = steps.add_parser("run")
    p.add_argument("--sessions", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8131)
    p.add_argument("--model", default="compat/fake-model")
    p.add_argument("--pid", type=int, action="append", default=[], help="a server process (repeatable)")
    p.add_argument("--sequential", action="store_true")
    p.add_argument("--timeout", type=float, default=300, help="per reply, seconds")
    p.add_argument("--settle", type=float, default=2.0, help="seconds after the last reply before the CPU is read")
    p.add_argument("--sigterm-after", type=float, help="SIGTERM the (first) server this many seconds into the replies")
    p.add_argument("--upstream-ttft", type=int, default=0, help="also time this many requests straight upstream")
    p.add_argument("--upstream", default="http://127.0.0.1:18190")
    p.set_defaults(func=run)
    p = steps.add_parser("check")
    p.add_argument("--sessions", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--since", type=float, required=True, help="the run's start (unix time)")
    p.set_defaults(func=check)
    args = parser.parse_args()
    if args.step == "run" and args.host != "127.0.0.1":
        parser.error("127.0.0.1 only")
    args.func(args)


if __name__ == "__main__":
    main()
