"""The demo's options and its fleet report: one proxy unless asked for more, and what each served."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from trio_litellm import ProxyStatistics
from trio_litellm.cli import demo


def test_the_demo_runs_one_proxy_by_default() -> None:
    assert demo.parse_args([]).proxies == 1


def test_the_demo_runs_a_fleet_when_asked() -> None:
    assert demo.parse_args(["--proxies", "2"]).proxies == 2


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_the_demo_refuses_a_fleet_without_proxies(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        demo.parse_args(["--proxies", value])
    assert exited.value.code == 2
    assert "--proxies" in capsys.readouterr().err


def test_the_fleet_report_gives_each_proxy_its_answers_and_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = io.StringIO()
    monkeypatch.setattr(demo, "console", Console(file=out, width=100, color_system=None))
    proxies = [
        ProxyStatistics(
            url="http://127.0.0.1:4001",
            health="up",
            available=True,
            in_flight=0,
            answered=1523,
            failures=0,
            last_error=None,
            open_connections=4,
            monitor=None,
        ),
        ProxyStatistics(
            url="http://127.0.0.1:4002",
            health="down",
            available=False,
            in_flight=0,
            answered=1489,
            failures=3,
            last_error="connection refused",
            open_connections=0,
            monitor=None,
        ),
    ]

    demo.render_served(proxies)

    lines = out.getvalue().splitlines()
    assert any("http://127.0.0.1:4001" in line and "1,523" in line for line in lines)
    assert any(
        "http://127.0.0.1:4002" in line and "1,489" in line and "3" in line for line in lines
    )
