"""The Redis channel layer, with messages for this process's own channels handed over in the process.

channels_redis sends every message through Redis, even to a socket in the process that sends it: a group
send costs four round trips (expire the group, read it, expire the channel keys, a Lua push), and each
message another four to receive (the blocking pop, its backup, the backup's clean-up). A streamed chat reply
sends one message per piece of text to the sockets showing it, which are nearly always in the process
writing it. And all of a process's channels share one Redis key, whose capacity (100 messages) a hundred
streaming sockets overran: most pieces were dropped (BENCHMARKS.md, "Chat sockets under load"). Here a
group send reads the group in one round trip and puts the message for each of this process's channels
straight into the buffer its receiver waits on, where channels_redis's own receive loop would have put it;
only other processes' channels go through Redis, as before. Every channel still receives the messages of
one sender in the order they were sent.

Receiving: channels_redis lets one of the process's waiting receivers at a time pop the process's Redis queue
and share out what it pops, so a message handed over in the process to that very receiver would wait for the
next message from Redis. Here one reader task per event loop pops the queue (as channels_redis does, backup
queue included) for as long as anything in the process receives, and every receiver waits on its own buffer
only, which the reader and the hand-over fill alike.

Its connection pool is larger than redis-py's default (100), and waits for a free connection (up to
`POOL_TIMEOUT`) instead of failing at once with "Too many connections" when a burst needs more.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels_redis.core import RedisChannelLayer
from redis import asyncio as aioredis

logger = logging.getLogger(__name__)

# A group send holds a connection for its round trip: 1,000 streaming replies send at once, and with a pool of
# 100 waited for 20 s a third of them failed ("No connection available"). Redis takes 10,000 clients.
POOL_SIZE = 1000
POOL_TIMEOUT = 60.0

# The Lua push of channels_redis's group send, for the channels of other processes.
PUSH_LUA = """
local over_capacity = 0
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


class WaitingConnectionPool(aioredis.BlockingConnectionPool):
    # Without redis-py's check for deprecated arguments, which binds the call's signature with inspect on every
    # command (3 % of the server's CPU under the chat socket load); nothing here passes any.
    get_connection = aioredis.BlockingConnectionPool.get_connection.__wrapped__  # type: ignore[attr-defined]


class ProcessLocalRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.readers: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}
        self.receivers: dict[asyncio.AbstractEventLoop, int] = {}

    def create_pool(self, index):
        host = dict(self.hosts[index])
        if "address" not in host:  # sentinels: as channels_redis makes them
            return super().create_pool(index)
        host.setdefault("max_connections", POOL_SIZE)
        host.setdefault("timeout", POOL_TIMEOUT)
        return WaitingConnectionPool.from_url(host.pop("address"), **host)

    def _is_ours(self, channel: str) -> bool:
        return "!" in channel and self.non_local_name(channel).endswith(f".{self.client_prefix}!")

    def _hand_over(self, channel: str, message: dict) -> None:
        # What channels_redis's receive loop does with a message it popped for one of this process's channels.
        self.receive_buffer[channel].put_nowait(dict(message))

    async def send(self, channel, message):
        if self._is_ours(channel):
            assert isinstance(message, dict), "message is not a dict"
            assert self.require_valid_channel_name(channel), "Channel name not valid"
            self._hand_over(channel, message)
            return
        await super().send(channel, message)

    async def group_send(self, group, message):
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)  # expired members
            pipe.zrange(key, 0, -1)
            _, members = await pipe.execute()
        others = []
        for member in members:
            channel = member.decode("utf8")
            if self._is_ours(channel):
                self._hand_over(channel, message)
            else:
                others.append(channel)
        if others:
            await self._push(others, message)

    async def _push(self, channel_names: list[str], message: dict) -> None:
        """channels_redis's group send to these channels (of other processes), through Redis."""
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            connection = self.connection(index)
            async with connection.pipeline(transaction=False) as pipe:
                for key in keys:  # expired messages
                    pipe.zremrangebyscore(key, min=0, max=int(time.time()) - int(self.expiry))
                await pipe.execute()
            args = [messages[key] for key in keys] + [capacities[key] for key in keys] + [time.time(), self.expiry]
            await connection.eval(PUSH_LUA, len(keys), *keys, *args)

    async def receive(self, channel):
        if "!" not in channel:  # a channel shared by processes: as channels_redis receives it
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        assert self._is_ours(channel), "Wrong client prefix"
        loop = asyncio.get_running_loop()
        self.receivers[loop] = self.receivers.get(loop, 0) + 1
        reader = self.readers.get(loop)
        if reader is None or reader.done():
            self.readers[loop] = loop.create_task(self._read(self.non_local_name(channel), loop))
        buffer = self.receive_buffer[channel]
        try:
            return await buffer.get()
        finally:
            self.receivers[loop] -= 1
            if buffer.empty() and self.receive_buffer.get(channel) is buffer:
                del self.receive_buffer[channel]  # nothing kept for a channel nobody waits on

    async def _read(self, process_channel: str, loop: asyncio.AbstractEventLoop) -> None:
        """Pop this process's Redis queue into the receivers' buffers while anything in the process receives
        (checked each time the blocking pop times out, every `brpop_timeout` seconds). As channels_redis does,
        a popped message stays in a backup queue until a clean-up removes it, and a pop first moves whatever is
        left in the backup back to the queue: a reader cancelled meanwhile loses nothing. One reader per loop,
        so instead of channels_redis's per-channel lock each pop waits for the previous pop's clean-up (a lock
        held by a reader whose loop closed mid-pop, as a test's does, would block every later reader)."""
        index = self.consistent_hash(process_channel)
        key = self.prefix + process_channel
        cleaning: asyncio.Task | None = None
        try:
            while self.receivers.get(loop):
                try:
                    if cleaning is not None:
                        await cleaning
                        cleaning = None
                    popped = await self._brpop_with_clean(index, key, timeout=self.brpop_timeout)
                except Exception:  # Redis away (or its pool closed with the loop): the receivers wait, it tries again
                    cleaning = None
                    if not self.receivers.get(loop):
                        return
                    logger.exception("channel layer: reading %s failed", key)
                    await asyncio.sleep(1)
                    continue
                if popped is None:
                    continue
                cleaning = loop.create_task(self._clean_receive_backup(index, key))
                message = self.deserialize(popped)
                channels = message.pop("__asgi_channel__", [])
                for channel in channels if isinstance(channels, list) else [channels]:
                    self.receive_buffer[channel].put_nowait(message)
            if cleaning is not None:
                await cleaning
        finally:
            if self.readers.get(loop) is asyncio.current_task():
                del self.readers[loop]
