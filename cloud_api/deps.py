"""FastAPI dependencies: the services, the clock, and the signed-in person by role."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud_api.accounts.service import AccountService, Person
from cloud_api.devices.service import DeviceService
from cloud_api.errors import Forbidden, NotAuthenticated
from cloud_api.keys import CloudKeys
from cloud_api.points.service import PointsService
from cloud_api.store import Store
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


def services(request: Request) -> Services:
    """The app's services."""
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]
_bearer = HTTPBearer(auto_error=False)


def signed_in(
    svc: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Person:
    """The person behind the bearer token."""
    if credentials is None:
        raise NotAuthenticated("sign in first")
    return svc.accounts.person_for(credentials.credentials, svc.clock.now().wall_ms)


def role(*roles: str) -> Callable[[Person], Person]:
    """A dependency that admits only the given roles."""

    def check(person: Annotated[Person, Depends(signed_in)]) -> Person:
        if person.role not in roles:
            raise Forbidden("your role may not do this")
        return person

    return check


AnyPerson = Annotated[Person, Depends(signed_in)]
Resident = Annotated[Person, Depends(role("resident"))]
Staff = Annotated[Person, Depends(role("social_worker", "maintainer"))]
SocialWorker = Annotated[Person, Depends(role("social_worker"))]
