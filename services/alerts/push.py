"""Live push across replicas: Redis pub/sub channels per user and per role, fanned out to local sockets.

Whichever replica handles an event publishes the frame to the recipient's channel; every replica
subscribes to the channels of the sockets it holds. Delivery never waits: a client whose bounded
queue is full is closed with 1013 and re-reads ``GET /alerts`` on reconnect, because a silently
dropped status change would leave it showing a wrong status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from shopkit.metrics import WEBSOCKET_CONNECTIONS
from shopkit.tasks import cancel

log = logging.getLogger("alerts.push")

RECONNECT_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


class Channels:
    """Channel names, prefixed by the shop's namespace so test runs and shops sharing a Redis stay apart."""

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}alerts:ws:"

    def user(self, user_id: str) -> str:
        return f"{self.prefix}user:{user_id}"

    def role(self, role: str) -> str:
        return f"{self.prefix}role:{role}"

    @property
    def control(self) -> str:
        # Always subscribed, so the pub/sub connection exists before the first socket arrives.
        return f"{self.prefix}control"

    def for_principal(self, user_id: str, role: str) -> list[str]:
        channels = [self.user(user_id)]
        if role == "admin":
            channels.append(self.role("admin"))
        return channels


class Subscriber:
    """One socket's mailbox: a bounded queue of text frames, and whether it overflowed."""

    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = asyncio.Event()
        self.dropped = 0

    def offer(self, text: str) -> bool:
        """Never waits. ``False`` (and :attr:`overflowed` set) when the client is too far behind."""
        if self.overflowed.is_set():
            self.dropped += 1
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            self.overflowed.set()
            return False
        return True


class PushHub:
    def __init__(self, redis: Redis, channels: Channels) -> None:
        self.redis = redis
        self.channels = channels
        self._local: dict[str, set[Subscriber]] = {}
        self._lock = asyncio.Lock()
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None

    # Sending ---------------------------------------------------------------------------------------

    async def publish(self, channel: str, text: str) -> None:
        """To every replica's sockets on ``channel``; best effort (GET /alerts is the record)."""
        try:
            await self.redis.publish(channel, text)
        except RedisError as exc:
            log.warning("could not publish a push frame to %s: %s", channel, exc)

    async def publish_many(self, frames: Sequence[tuple[str, str]]) -> None:
        """Each ``(channel, text)`` in order, in one round trip (a pipeline); best effort like :meth:`publish`."""
        if len(frames) <= 1:
            for channel, text in frames:
                await self.publish(channel, text)
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for channel, text in frames:
                    pipe.publish(channel, text)
                await pipe.execute()
        except RedisError as exc:
            log.warning("could not publish %d push frames: %s", len(frames), exc)

    # Local sockets ---------------------------------------------------------------------------------

    @property
    def local_sockets(self) -> int:
        return len({s for subs in self._local.values() for s in subs})

    async def register(self, sub: Subscriber, channels: Iterable[str]) -> None:
        """Returns once this process is subscribed to every channel, so nothing published after is missed."""
        async with self._lock:
            new = []
            for ch in channels:
                if ch not in self._local:
                    self._local[ch] = set()
                    new.append(ch)
                self._local[ch].add(sub)
            try:
                if new:
                    await self._ensure_pubsub().subscribe(*new)
            except BaseException:
                for ch in channels:
                    self._discard(ch, sub)
                raise
            finally:
                WEBSOCKET_CONNECTIONS.set(self.local_sockets)

    async def unregister(self, sub: Subscriber) -> None:
        async with self._lock:
            gone = [ch for ch, subs in self._local.items() if sub in subs and len(subs) == 1]
            for ch in list(self._local):
                self._discard(ch, sub)
            WEBSOCKET_CONNECTIONS.set(self.local_sockets)
            if gone and self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(*gone)
                except RedisError as exc:  # the listener's reconnect resubscribes only what is left
                    log.debug("unsubscribe failed: %s", exc)

    def _discard(self, channel: str, sub: Subscriber) -> None:
        subs = self._local.get(channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._local[channel]

    def dispatch(self, channel: str, text: str) -> int:
        """Copy a frame into the queue of every local socket on ``channel``; never waits. Returns how many took it."""
        return sum(sub.offer(text) for sub in list(self._local.get(channel, ())))

    # The listener ----------------------------------------------------------------------------------

    def _ensure_pubsub(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        return self._pubsub

    async def start(self) -> None:
        await self._ensure_pubsub().subscribe(self.channels.control)
        self._task = asyncio.create_task(self._listen(), name="alerts-push-listener")

    async def stop(self) -> None:
        await cancel(self._task)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()

    async def _listen(self) -> None:
        pubsub = self._ensure_pubsub()
        failures = 0
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                # redis-py reconnects and resubscribes the current channels on the next read.
                delay = RECONNECT_BACKOFF_SECONDS[min(failures, len(RECONNECT_BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning("push listener lost Redis (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel, data = message["channel"], message["data"]
            if isinstance(channel, bytes):
                channel = channel.decode()
            if isinstance(data, bytes):
                data = data.decode()
            self.dispatch(str(channel), str(data))
