"""The domain services and repositories the XMPP side is given by the composition root."""

from __future__ import annotations

from dataclasses import dataclass

from chinwag.network.accounts import AccountService
from chinwag.network.blocking import BlockingService
from chinwag.network.contacts import ContactService
from chinwag.network.events import EventLog
from chinwag.network.profiles import ProfileService
from chinwag.server.auth import Authenticator
from chinwag.store.archive import ArchiveRepository
from chinwag.store.offline import OfflineRepository
from chinwag.store.pep import PepRepository


@dataclass(frozen=True, slots=True)
class Services:
    authenticator: Authenticator
    accounts: AccountService
    contacts: ContactService
    profiles: ProfileService
    offline: OfflineRepository
    events: EventLog
    blocking: BlockingService
    archive: ArchiveRepository
    pep: PepRepository
