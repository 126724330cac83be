"""Membership changes as PostgreSQL announces them: every worker forgets what changed at once.

Migration 0006 makes each committed change to ``hospital_membership`` (``hms members``, or plain
SQL, from any process) notify ``'<hospital_id> <subject>'`` on the ``hms_membership`` channel,
and a TRUNCATE ``'*'`` (everything). A :class:`MembershipListener` per worker listens on one
connection of its own and makes :class:`~hms.security.identity.Memberships` forget the pair, so
a removed member is refused within moments instead of after ``membership_ttl``.

A notification sent while nobody listens is gone for good. Whenever the connection cannot be
opened, is lost, or stops answering its ping, the listener forgets every cached membership,
then reconnects after 0.1 s, doubling to at most 5 s (back to 0.1 s once a connection has lasted
that long), and forgets everything again once LISTEN is back in effect. While it is not
listening, the TTL still bounds how long an answer is trusted. Nothing it logs names a subject.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from hms.persistence import notifications
from hms.persistence.database import side_engine
from hms.security.identity import Memberships

#: The channel of migration 0006's trigger.
CHANNEL = "hms_membership"
#: The listening connection's name in ``pg_stat_activity``.
APPLICATION_NAME = "hms-memberships"
#: The payload meaning "forget every membership".
EVERYTHING = "*"

log = logging.getLogger("hms")


class MembershipListener:
    """Keeps ``members`` in step with the database's announcements until :meth:`run` is
    cancelled. ``listening``, ``sessions`` (how often LISTEN took effect) and ``received``
    (notifications handled) are there for health checks and tests."""

    def __init__(
        self,
        members: Memberships,
        database_url: str,
        *,
        pooled: bool = False,
        first_delay: float = 0.1,
        max_delay: float = 5.0,
        ping_every: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        self.members = members
        self.pooled = pooled  # database_url names a transaction pooler
        self.database_url = database_url
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.ping_every = ping_every
        self.timeout = timeout
        self.listening = False
        self.sessions = 0
        self.received = 0
        self._since = 0.0

    def deliver(self, payload: str) -> None:
        """Forget what ``payload`` names; anything unexpected means everything."""
        self.received += 1
        hospital, _, subject = payload.partition(" ")
        try:
            hospital_id = uuid.UUID(hospital)
        except ValueError:
            hospital_id = None
        if hospital_id is None or not subject:
            self.members.forget_all()
        else:
            self.members.forget(hospital_id, subject)

    def _listening(self) -> None:
        self.listening = True
        self.sessions += 1
        self._since = time.monotonic()
        # Changes committed before LISTEN took effect were announced to no one.
        self.members.forget_all()
        if self.sessions > 1:
            log.info("membership notifications resumed")

    async def run(self) -> None:
        """Listen, and reconnect whenever that fails, until cancelled."""
        engine = side_engine(self.database_url, APPLICATION_NAME, pooled=self.pooled)
        delay = self.first_delay
        try:
            while True:
                try:
                    await notifications.listen(
                        engine,
                        CHANNEL,
                        self.deliver,
                        listening=self._listening,
                        ping_every=self.ping_every,
                        answer_within=self.timeout,
                    )
                except Exception as error:
                    lasted = self.listening and time.monotonic() - self._since >= self.max_delay
                    self.listening = False
                    self.members.forget_all()
                    if lasted:
                        delay = self.first_delay
                    log.warning(
                        "membership notifications interrupted (%s): cached memberships"
                        " forgotten, reconnecting in %.1f s",
                        type(error).__name__,
                        delay,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
        finally:
            self.listening = False
            await engine.dispose()
