"""FastAPI dependencies: the services, the clock, and the signed-in person by role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from cloud_api.access import ROLES, STAFF, allow, public
from cloud_api.accounts.service import AccountService, Person
from cloud_api.alerts.service import AlertService
from cloud_api.contributions.service import ContributionService
from cloud_api.devices.service import DeviceService
from cloud_api.items.service import ItemService
from cloud_api.keys import CloudKeys
from cloud_api.points.service import PointsService
from cloud_api.scheduler import Scheduler
from cloud_api.store import Store
from cloud_api.terminal.service import TerminalService
from cloud_api.valuations.service import ValuationService
from linli.clock import Clock


@dataclass
class Services:
    """Everything a request handler may use, created in the app's lifespan."""

    store: Store
    keys: CloudKeys
    clock: Clock
    accounts: AccountService
    devices: DeviceService
    points: PointsService
    items: ItemService
    contributions: ContributionService
    valuations: ValuationService
    terminal: TerminalService
    scheduler: Scheduler
    alerts: AlertService
    data_dir: Path


def services(request: Request) -> Services:
    """The app's services."""
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]
Me = Annotated[Person, allow(*ROLES, scope="self")]
"""Any signed-in person, about their own data."""
AnyPerson = Annotated[Person, allow(*ROLES, scope="community")]
"""Any signed-in person, about objects of their community (residents: their own, where owned)."""
Resident = Annotated[Person, allow("resident", scope="own")]
"""A resident, about objects they own (another's: 404)."""
ResidentSelf = Annotated[Person, allow("resident", scope="self")]
"""A resident, about their own data."""
Staff = Annotated[Person, allow(*STAFF, scope="community")]
"""A social worker or maintainer, about their community."""
SocialWorker = Annotated[Person, allow("social_worker", scope="community")]
"""A social worker, about their community."""
Maintainer = Annotated[Person, allow("maintainer", scope="community")]
"""A maintainer, about their community."""
Public = public()
"""The declaration of a route open to everyone: ``dependencies=[Public]``."""
