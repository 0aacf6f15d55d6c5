"""A pytest plugin: no log record of the whole test session may carry a demo secret.

Loaded from ``tests/conftest.py`` (``pytest_plugins``). For the whole session a handler on the
root logger sees every record at DEBUG and up, whoever emits it (the cloud, the controller, the
station, a library), and checks its message, its arguments and its exception text against the
canaries: the demo seed's phone numbers, PINs, passwords and TOTP secrets
(:data:`cloud_api.seed.LOGINS`). A record carrying one is a leak; the session goes on, and at its
end prints which test was running, which logger and which canary (never the secret itself), and
exits non-zero.

How it stays out of the way: only the root *logger's* level is lowered to DEBUG (records below
WARNING must exist to be checked); no handler's level is touched, so pytest's report capture and
``caplog`` behave as their own settings say (a failing test's "Captured log" section may show
DEBUG lines). Loggers that do not propagate to the root (uvicorn's) get the same handler attached
before each test phase, at their own levels.

The canaries come from the seed's fields by name (``secret``, ``totp_secret``, a phone-like
``login``, and any field named like pin/password/phone/totp), so a secret added to
:class:`~cloud_api.seed.DemoLogin` is watched without touching this file.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import traceback
from collections.abc import Generator, Iterable
from dataclasses import dataclass

import pytest

from cloud_api.seed import LOGINS

SECRET_FIELD = re.compile(r"secret|pin|password|phone|totp", re.IGNORECASE)


def canaries(logins: Iterable[object] = LOGINS) -> dict[str, str]:
    """Each secret of the demo logins → how to name it without showing it."""
    found: dict[str, str] = {}
    for index, login in enumerate(logins, start=1):
        role = getattr(login, "role", "?")
        for spec in dataclasses.fields(login):  # type: ignore[arg-type]
            value = getattr(login, spec.name)
            if not isinstance(value, str) or len(value) < 4:
                continue
            if spec.name == "login":
                if value.isdigit():
                    found.setdefault(value, f"the phone number of demo login #{index} ({role})")
            elif SECRET_FIELD.search(spec.name):
                kind = (
                    {"resident": "PIN"}.get(role, "password")
                    if spec.name == "secret"
                    else spec.name
                )
                found.setdefault(value, f"the {kind} of demo login #{index} ({role})")
    return found


def pattern_of(values: Iterable[str]) -> re.Pattern[str]:
    """One regex finding any of ``values`` as a whole token: a number not inside a longer
    number, a word not inside a longer word."""
    parts = []
    for value in sorted(set(values), key=len, reverse=True):
        edge = r"\d" if value.isdigit() else r"[A-Za-z0-9]"
        parts.append(rf"(?<!{edge}){re.escape(value)}(?!{edge})")
    return re.compile("|".join(parts) or r"(?!x)x")


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a record can put into a log line: message, arguments, exception, stack."""
    texts = []
    try:
        texts.append(record.getMessage())
    except Exception:  # a bad format string must not hide its arguments
        texts.append(str(record.msg))
    if record.args:
        texts.append(repr(record.args))
    if record.exc_info and record.exc_info[1] is not None:
        texts.append("".join(traceback.format_exception(*record.exc_info)))
    if record.exc_text:
        texts.append(record.exc_text)
    if record.stack_info:
        texts.append(record.stack_info)
    return texts


@dataclass(frozen=True)
class Leak:
    """A canary seen in a record (its label, never its value)."""

    test: str
    logger: str
    level: str
    canary: str


class CanaryHandler(logging.Handler):
    """Collects the records that carry a canary."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__(logging.DEBUG)
        self._labels = secrets
        self._pattern = pattern_of(secrets)
        self._lock_leaks = threading.Lock()
        self.leaks: dict[Leak, int] = {}
        self.current_test = "(outside any test)"

    def emit(self, record: logging.LogRecord) -> None:
        try:
            found = {
                m.group(0) for text in record_texts(record) for m in self._pattern.finditer(text)
            }
        except Exception:  # a handler must never raise into the code that logs
            return
        for value in found:
            leak = Leak(self.current_test, record.name, record.levelname, self._labels[value])
            with self._lock_leaks:
                self.leaks[leak] = self.leaks.get(leak, 0) + 1


_KEY = pytest.StashKey[tuple[CanaryHandler, int]]()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    handler = CanaryHandler(canaries())
    config.stash[_KEY] = (handler, root.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def pytest_unconfigure(config: pytest.Config) -> None:
    handler, level = config.stash[_KEY]
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(level)
    for logger in _non_propagating():
        logger.removeHandler(handler)


def _non_propagating() -> list[logging.Logger]:
    return [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]


def _watch(item: pytest.Item) -> CanaryHandler:
    handler, _ = item.config.stash[_KEY]
    handler.current_test = item.nodeid
    for logger in _non_propagating():
        if handler not in logger.handlers:
            logger.addHandler(handler)
    return handler


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _watch(item)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    _watch(item)
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    handler = _watch(item)
    try:
        return (yield)
    finally:
        handler.current_test = f"(after {item.nodeid})"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    handler, _ = session.config.stash[_KEY]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand the leaks to the controller
        workeroutput["canary_leaks"] = [
            [*dataclasses.astuple(leak), count] for leak, count in handler.leaks.items()
        ]
        return
    if handler.leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist's controller: add a finished worker's leaks to the session's (the controller
    then fails the run and names them, as without workers)."""
    found = getattr(node, "workeroutput", {}).get("canary_leaks", [])
    handler, _ = node.config.stash[_KEY]  # type: ignore[attr-defined]
    for *fields, count in found:
        leak = Leak(*fields)
        handler.leaks[leak] = handler.leaks.get(leak, 0) + count


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    handler, _ = terminalreporter.config.stash[_KEY]
    if not handler.leaks:
        return
    terminalreporter.section("secret canary: secrets in log records", red=True, bold=True)
    for leak, count in sorted(handler.leaks.items(), key=lambda kv: (kv[0].test, kv[0].logger)):
        terminalreporter.write_line(
            f"{leak.test}: logger {leak.logger!r} ({leak.level}) logged {leak.canary}"
            f" ({count} record{'s' if count > 1 else ''})"
        )
