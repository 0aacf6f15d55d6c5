"""Who may call a route, declared on the route itself (and read back by the role × route test).

Every route of the API names exactly one :class:`Access` through its dependencies: the roles it
admits and the scope of what it shows or changes. The dependency both *enforces* the role (401
without a session, 403 for another role) and *declares* it, so the declaration cannot drift from
what runs. Community and ownership are then enforced where the data is read, by filtering on the
caller's community and id: an object of another community, or another resident's, is
``404 not found`` (never 403: its existence is not revealed).

Scopes:
    public: no session needed (sign-in, health, published roots).
    self: the signed-in person's own data; the path names no one else.
    own: objects named in the path must belong to the calling resident; staff of the object's
        community may also reach them where their role is admitted.
    community: objects of the caller's community.
    device: a device speaking for itself with its own token (the valuation terminal's
        ``Authorization: Terminal <device_id>:<token>``); a person's session is refused (403).

Example:
    >>> @router.get("/items/{item_id}")
    ... def item(item_id: IdPath, person: Annotated[Person, allow("resident", scope="own")]): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cloud_api.accounts.service import Person
from cloud_api.errors import Forbidden, NotAuthenticated

Scope = Literal["public", "self", "own", "community", "device"]
ROLES = ("resident", "social_worker", "maintainer")
STAFF = ("social_worker", "maintainer")


@dataclass(frozen=True)
class Access:
    """The declared access of one route."""

    roles: frozenset[str]
    scope: Scope


_bearer = HTTPBearer(auto_error=False)


def _signed_in(request: Request, token: str) -> Person:
    services = request.app.state.services
    person: Person = services.accounts.person_for(token, services.clock.now().wall_ms)
    return person


def allow(*roles: str, scope: Scope) -> Any:
    """A dependency admitting the signed-in ``roles``; it carries its :class:`Access`."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles or scope == "public":
        raise ValueError(f"allow() needs known roles and a non-public scope, got {roles} {scope}")
    admitted = frozenset(roles)

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Person:
        if credentials is None:
            raise NotAuthenticated("sign in first")
        person = _signed_in(request, credentials.credentials)
        if person.role not in admitted:
            raise Forbidden("your role may not do this")
        return person

    check.access = Access(admitted, scope)  # type: ignore[attr-defined]
    return Depends(check)


def terminal_device() -> Any:
    """A dependency admitting an enrolled valuation terminal (returns its ``Terminal``)."""

    def check(request: Request) -> Any:
        header = request.headers.get("authorization", "")
        scheme, _, credentials = header.partition(" ")
        services = request.app.state.services
        if scheme.lower() == "terminal":
            return services.terminal.authenticate(credentials.strip())
        if scheme.lower() == "bearer" and credentials:
            _signed_in(request, credentials.strip())  # 401 for a wrong session
            raise Forbidden("only a valuation terminal may do this")
        raise NotAuthenticated("a valuation terminal's token is needed")

    check.access = Access(frozenset({"terminal"}), "device")  # type: ignore[attr-defined]
    return Depends(check)


def public() -> Any:
    """The declaration of a route anyone may call without a session."""

    def open_to_all() -> None:
        return None

    open_to_all.access = Access(frozenset(), "public")  # type: ignore[attr-defined]
    return Depends(open_to_all)


def _declared_in(dependant: Any) -> Iterator[Access]:
    call: Callable[..., Any] | None = getattr(dependant, "call", None)
    found = getattr(call, "access", None)
    if isinstance(found, Access):
        yield found
    for sub in getattr(dependant, "dependencies", ()):
        yield from _declared_in(sub)


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """Every route of the app with ``path``, ``methods`` and ``dependant``: FastAPI before 0.16x
    flattens included routers into ``app.routes``; later versions keep them as included-router
    entries that expand through ``effective_route_contexts()``."""
    for route in app.routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_route_contexts"):
            yield from route.effective_route_contexts()


def declared_routes(app: FastAPI, prefix: str = "/api/") -> list[tuple[str, str, Access]]:
    """Every (method, path, access) of the app's API routes.

    Raises:
        ValueError: a route under ``prefix`` declares no access, or more than one.
    """
    result = []
    for route in _api_routes(app):
        path = str(route.path)
        if not path.startswith(prefix):
            continue
        found = set(_declared_in(route.dependant))
        if len(found) != 1:
            raise ValueError(f"{path} declares {len(found)} accesses; exactly one is needed")
        (access,) = found
        for method in sorted(route.methods or ()):
            result.append((method, path, access))
    return result
