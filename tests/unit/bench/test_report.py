"""The benchmark's verdicts on its targets, from medians of made-up runs."""

from __future__ import annotations

from typing import Any

from wsgate.bench.report import evaluate, targets_text
from wsgate.bench.runner import Results, Row
from wsgate.bench.scenarios import Counts


def results(*rows: tuple[str, str, list[dict[str, float]]]) -> Results:
    return Results(
        rows=[Row(scenario, server, runs=runs) for scenario, server, runs in rows],
        meta={},
        counts=Counts(),
    )


def verdict(evaluated: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(entry for entry in evaluated if entry["name"] == name)


ECHO_VS_PICOWS = "echo: server CPU per message, wsgate / picows"
ECHO_VS_OFFLINE = "echo: messages/s, wsgate / serverless-offline"


def test_ratios_are_of_medians_and_judged_against_the_bound() -> None:
    """wsgate's median over the reference's median; one slow run does not decide it."""
    evaluated = evaluate(
        results(
            ("echo", "wsgate", [{"server_cpu_us_per_message": v} for v in (11, 12, 40)]),
            ("echo", "picows", [{"server_cpu_us_per_message": v} for v in (10, 10, 10)]),
        )
    )
    entry = verdict(evaluated, ECHO_VS_PICOWS)
    assert entry["value"] == 1.2
    assert entry["met"] is True
    assert "1.20  target <= 1.25  met" in targets_text(evaluated)


def test_a_missing_reference_is_not_a_verdict() -> None:
    """Without the reference's row the target is n/a, saying which server was not run."""
    evaluated = evaluate(results(("echo", "wsgate", [{"server_cpu_us_per_message": 12}])))
    entry = verdict(evaluated, ECHO_VS_PICOWS)
    assert entry["value"] is None and entry["met"] is None
    assert entry["missing"] == "picows was not run in echo"


def test_a_bound_beyond_the_fastest_raw_server_says_so() -> None:
    """A multiple of serverless-offline that raw picows itself does not reach is flagged."""
    evaluated = evaluate(
        results(
            ("echo", "wsgate", [{"messages_per_s": 50_000}]),
            ("echo", "picows", [{"messages_per_s": 75_000}]),
            ("echo", "serverless-offline", [{"messages_per_s": 2_500}]),
        )
    )
    entry = verdict(evaluated, ECHO_VS_OFFLINE)
    assert entry["value"] == 20 and entry["met"] is False
    assert entry["ceiling_value"] == 30
    line = next(x for x in targets_text(evaluated).splitlines() if ECHO_VS_OFFLINE in x)
    assert line.endswith("NOT met  (raw picows: 30.00, so no server reaches the bound here)")


def test_a_reachable_bound_missed_shows_the_ceiling_without_excuse() -> None:
    """When raw picows does reach the bound, a miss is wsgate's alone."""
    evaluated = evaluate(
        results(
            ("echo", "wsgate", [{"messages_per_s": 50_000}]),
            ("echo", "picows", [{"messages_per_s": 150_000}]),
            ("echo", "serverless-offline", [{"messages_per_s": 2_500}]),
        )
    )
    line = next(x for x in targets_text(evaluated).splitlines() if ECHO_VS_OFFLINE in x)
    assert line.endswith("NOT met  (raw picows: 60.00)")
