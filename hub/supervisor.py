"""Supervised services: restart with jittered exponential backoff, give up on errors retrying cannot fix.

A *service* is anything with a ``name`` and ``async run(ready)`` that serves until cancelled and calls
``ready()`` once it is up (connected, subscribed, scheduled). Adapters and automations are services.

What the supervisor does depends on the exception (HA ``config_entries.py``):

==========================================  ==================================================================
``ConfigError``, ``AdapterAuthError``        state ``failed``; logged once with the reason; no retry
``AdapterNotReady``                          state ``retrying``; logged once when it starts failing and once
                                             when it recovers; retried with backoff
any other ``Exception``                      a bug: logged with its traceback, retried with backoff (never a
                                             hot loop)
``run`` returns                              state ``stopped``; the service is done
==========================================  ==================================================================

The backoff delay grows ``initial × factor^n`` up to ``maximum``, each with ±``jitter`` so a fleet of
adapters does not reconnect in lockstep, and resets once a run has stayed up for ``reset_after`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from hub.clock import Clock, SystemClock
from hub.errors import AdapterAuthError, AdapterNotReady, ConfigError

__all__ = ["Backoff", "Health", "Service", "ServiceHealth", "supervise"]

log = logging.getLogger(__name__)


class Service(Protocol):
    name: str

    async def run(self, ready: Callable[[], None]) -> None:
        """Serve until cancelled; call ``ready()`` once up. Raise a HubError subclass to say what went wrong."""
        ...


class Health(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RETRYING = "retrying"
    FAILED = "failed"


@dataclass
class ServiceHealth:
    """What anyone (API, CLI, metrics) may know about one supervised service."""

    name: str
    stage: str
    state: Health = Health.STOPPED
    since: datetime | None = None
    restarts: int = 0
    last_error: str | None = None
    retry_in: float | None = None

    def __post_init__(self) -> None:
        # Set once the first start attempt has settled: the service reported ready, gave up, or failed and is
        # retrying. The runtime waits for this before starting the next stage, so a peer that is down (a UPS
        # server, a Modbus gateway) shows as "retrying" instead of holding up the whole hub.
        self.ready = asyncio.Event()

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "stage": self.stage,
            "state": self.state.value,
            "since": self.since.isoformat() if self.since else None,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "retry_in": self.retry_in,
        }


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.2
    reset_after: float = 30.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay before retry number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.factor**attempt)
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


async def supervise(
    service: Service,
    health: ServiceHealth,
    *,
    backoff: Backoff | None = None,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> None:
    """Run ``service`` until cancelled, restarting it as the table in this module's docstring says."""
    backoff = backoff or Backoff()
    clock = clock or SystemClock()
    attempt = 0
    failing = False

    def set_state(state: Health) -> None:
        health.state = state
        health.since = clock.now()

    while True:
        set_state(Health.STARTING)
        up_since: float | None = None

        def ready() -> None:
            nonlocal up_since, failing
            up_since = clock.monotonic()
            set_state(Health.RUNNING)
            health.retry_in = None
            if failing:
                log.info("%s recovered after %d restart(s)", health.name, health.restarts)
                failing = False
            health.ready.set()

        try:
            await service.run(ready)
        except asyncio.CancelledError:
            set_state(Health.STOPPED)
            raise
        except (ConfigError, AdapterAuthError) as exc:
            set_state(Health.FAILED)
            health.last_error = str(exc)
            # Log the text, not the exception: a handler that keeps records would keep its traceback's frames
            # (and whatever sockets they hold) alive.
            log.error("%s stopped and will not retry: %s", health.name, health.last_error)
            health.ready.set()
            return
        except AdapterNotReady as exc:
            health.last_error = str(exc)
            if not failing:
                log.warning("%s is not reachable: %s (retrying with backoff)", health.name, health.last_error)
            failing = True
        except Exception as exc:
            health.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("%s crashed (a bug; restarting with backoff)", health.name)
            failing = True
        else:
            set_state(Health.STOPPED)
            log.info("%s finished", health.name)
            return
        health.ready.set()
        if up_since is not None and clock.monotonic() - up_since >= backoff.reset_after:
            attempt = 0
        delay = backoff.delay(attempt, rng)
        attempt += 1
        health.restarts += 1
        health.retry_in = delay
        set_state(Health.RETRYING)
        await clock.sleep(delay)
