"""Masking the run's passwords in everything pytest reports: a plugin registered with the gate.

The gate's own messages never hold a password, but the project's tests and commands see the
database URL and may print it (``echo $DATABASE_URL``, a failing assertion that shows a DSN).
Their output reaches the terminal, the JUnit XML and the gate's reports through pytest's reports,
so each report is masked the moment it is made, before any reporter sees it.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest
from psycopg.conninfo import conninfo_to_dict

from pytest_dbgate.config.model import GateConfig
from pytest_dbgate.core.masking import Secrets


def gather(config: GateConfig) -> Secrets:
    """The passwords of the run's URLs and ``$PGPASSWORD``."""
    secrets = Secrets()
    secrets.add(os.environ.get("PGPASSWORD"))
    for url in (config.source_url, config.staging_url, config.production_url):
        secrets.add(password_of(url))
    return secrets


def password_of(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:  # a URL that does not parse is refused with its own message
        return None
    return None if password is None else str(password)


class Redaction:
    """Mask every report's longrepr, captured output and properties."""

    def __init__(self, secrets: Secrets) -> None:
        self.secrets = secrets

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        self.mask_report(report)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(
        self,
    ) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
        report = yield
        self.mask_report(report)
        return report

    def mask_report(self, report: pytest.TestReport | pytest.CollectReport) -> None:
        if not self.secrets.passwords:
            return
        mask = self.secrets.mask
        longrepr = report.longrepr
        if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
            report.longrepr = (longrepr[0], longrepr[1], mask(longrepr[2]))
        elif longrepr is not None:
            text = str(longrepr)
            if mask(text) != text:
                report.longrepr = mask(text)
        report.sections = [(title, mask(content)) for title, content in report.sections]
        if isinstance(report, pytest.TestReport):
            report.user_properties = [
                (name, mask(value) if isinstance(value, str) else value)
                for name, value in report.user_properties
            ]
