"""The cloud's FastAPI application: ``create_app(settings)``; resources created in ``lifespan``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud_api.accounts.router import router as accounts_router
from cloud_api.accounts.service import AccountService
from cloud_api.alerts.router import router as alerts_router
from cloud_api.alerts.service import AlertService
from cloud_api.api import router
from cloud_api.contributions.router import router as contributions_router
from cloud_api.contributions.service import ContributionService
from cloud_api.core.ledger import Conflict as LedgerConflict
from cloud_api.core.ledger import LedgerError
from cloud_api.core.ledger import NotFound as LedgerNotFound
from cloud_api.deps import Public, Services
from cloud_api.devices.router import router as devices_router
from cloud_api.devices.service import DeviceService
from cloud_api.errors import HTTP_STATUS, CloudError, error_body
from cloud_api.grants.router import router as grants_router
from cloud_api.items.router import router as items_router
from cloud_api.items.service import ItemService
from cloud_api.keys import load_or_create_keys
from cloud_api.live import LiveHub
from cloud_api.metrics import install_metrics
from cloud_api.mqtt_bridge import CloudBridge
from cloud_api.notify.service import NotifyWorker, notify_jobs
from cloud_api.pages.alerts import router as alerts_pages_router
from cloud_api.pages.console import router as console_router
from cloud_api.pages.console_cases import router as console_cases_router
from cloud_api.pages.console_queue import router as console_queue_router
from cloud_api.pages.console_report import router as console_report_router
from cloud_api.pages.console_residents import router as console_residents_router
from cloud_api.pages.maint import router as maint_pages_router
from cloud_api.pages.router import router as pages_router
from cloud_api.pages.staff import router as staff_pages_router
from cloud_api.pages.web import CsrfRefused, PageRedirect, language_of, redirect, render
from cloud_api.points.router import router as points_router
from cloud_api.points.service import PointsService
from cloud_api.reports import router as reports_router
from cloud_api.scheduler import Job, Scheduler, domain_jobs
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from cloud_api.terminal.router import router as terminal_router
from cloud_api.terminal.service import TerminalService
from cloud_api.transparency import sign_due
from cloud_api.valuations.router import router as valuations_router
from cloud_api.valuations.service import ValuationService
from linli import __version__
from linli.broker import BrokerAddress
from linli.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def create_app(settings: CloudSettings, *, clock: Clock | None = None) -> FastAPI:
    """Build the app. Nothing is opened until the app starts (lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.data_dir / "cloud.sqlite3")
        store.migrate()
        keys = load_or_create_keys(settings.data_dir / "secrets")
        bridge = CloudBridge(
            BrokerAddress.from_url(
                settings.broker_url, settings.broker_username, settings.broker_password
            )
        )
        the_clock = clock or SystemClock()
        policy = settings.policy()
        devices = DeviceService(store, keys, bridge, the_clock, policy)
        live = LiveHub()  # the maintainer's live view: device changes wake its streams
        devices.listen(live)
        app.state.live = live
        points = PointsService(store, keys, the_clock)
        items = ItemService(store, keys, the_clock, devices.publish_config, points, policy)
        accounts = AccountService(store, keys)
        valuations = ValuationService(store, the_clock, items, settings)
        valuations.ensure_default_policy()
        valuations.snapshot_weekly(the_clock.now().wall_ms)  # before serving: the job is then idle
        terminal = TerminalService(
            store, keys, the_clock, accounts, items, valuations, devices, settings.data_dir
        )
        alerts = AlertService(
            store, the_clock, offline_grace_ms=settings.alert_offline_grace_s * 1000
        )
        devices.listen(alerts.on_device)
        scheduler = Scheduler(
            store,
            the_clock,
            [
                *domain_jobs(store, keys, devices, policy, period_s=settings.jobs_every_s),
                Job("auto_approve", settings.jobs_every_s, valuations.auto_approve),
                Job("demand_snapshot", 600, valuations.snapshot_weekly),
                Job("waiting_for_space", 5 * settings.jobs_every_s, terminal.waiting_for_space),
                *alerts.jobs(settings.jobs_every_s),
            ],
        )
        app.state.services = Services(
            store=store,
            keys=keys,
            clock=the_clock,
            accounts=accounts,
            devices=devices,
            points=points,
            items=items,
            contributions=ContributionService(store, the_clock, points),
            valuations=valuations,
            terminal=terminal,
            scheduler=scheduler,
            alerts=alerts,
            data_dir=settings.data_dir,
        )

        def refresh_online() -> None:
            for row in store.read("SELECT id FROM devices WHERE status = 'online'"):
                devices.refresh_config(row["id"])

        bridge.every(settings.config_refresh_s, refresh_online)
        bridge.every(0.25, devices.check_liveness)
        bridge.every(60, lambda: sign_due(store, keys, the_clock.now().wall_ms))
        bridge.every(settings.jobs_every_s, scheduler.run_due)
        notify_worker = NotifyWorker(
            Scheduler(store, the_clock, notify_jobs(store, keys, the_clock, settings)),
            settings.jobs_every_s,
        ).start()
        bridge.start(devices.handle)
        log.info("cloud %s serving from %s", __version__, settings.data_dir)
        try:
            yield
        finally:
            live.close()
            notify_worker.stop()
            bridge.stop()
            store.close()

    app = FastAPI(title="Linli cloud", version=__version__, lifespan=lifespan)

    @app.exception_handler(CloudError)
    async def domain_error(request: Request, exc: CloudError) -> JSONResponse:
        status = next((s for t, s in HTTP_STATUS.items() if isinstance(exc, t)), 400)
        return JSONResponse(error_body(exc.code, str(exc), exc.field), status_code=status)

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
        status = (
            409
            if isinstance(exc, LedgerConflict)
            else 404
            if isinstance(exc, LedgerNotFound)
            else 422
        )
        return JSONResponse(error_body(exc.code, str(exc)), status_code=status)

    @app.exception_handler(PageRedirect)
    async def page_redirect(request: Request, exc: PageRedirect) -> Response:
        return redirect(exc.location)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> Response:
        # A form without its token: 403 and nothing changed.
        return render(
            request,
            "error.html",
            language_of(request),
            status_code=403,
            message_key="page.error.forbidden",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the submitted input: that can be a PIN, and a non-finite
        # number (a body of `Infinity`) made the echo itself fail with a 500. Say where and why,
        # never what.
        errors = [
            {
                "field": ".".join(str(part) for part in error.get("loc", ())),
                "message": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
            for error in exc.errors()
        ]
        first = errors[0] if errors else {"field": None, "message": "invalid request"}
        body = error_body("invalid_request", str(first["message"]), first["field"])
        return JSONResponse(body | {"errors": errors}, status_code=422)

    @app.get("/healthz", dependencies=[Public])
    def healthz(request: Request) -> dict[str, object]:
        services: Services = request.app.state.services
        bridge_ok = services.devices._publisher.is_connected
        return {"ok": True, "version": __version__, "broker_connected": bridge_ok}

    app.include_router(accounts_router)
    app.include_router(router)
    app.include_router(points_router)
    app.include_router(items_router)
    app.include_router(contributions_router)
    app.include_router(grants_router)
    app.include_router(valuations_router)
    app.include_router(terminal_router)
    app.include_router(alerts_router)
    app.include_router(reports_router)
    app.include_router(pages_router)
    app.include_router(staff_pages_router)
    app.include_router(console_router)
    app.include_router(console_queue_router)
    app.include_router(console_residents_router)
    app.include_router(console_cases_router)
    app.include_router(console_report_router)
    app.include_router(alerts_pages_router)
    app.include_router(devices_router)
    app.include_router(maint_pages_router)
    # GET /metrics (token) and the request counters (docs/decisions/0023-metrics.md).
    install_metrics(app, settings.metrics_token)
    app.mount("/static", StaticFiles(packages=[("cloud_api.pages", "static")]), name="static")
    return app
