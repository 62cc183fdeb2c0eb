"""Adding workers' counts: what `/metrics` of `--workers N` shows is the sum of each."""

from __future__ import annotations

from wsgate.server.observability import Snapshot, add, exposition


def test_add_sums_each_label_set_and_keeps_those_only_one_has() -> None:
    """Counters and gauges add per label set; histograms add bucket by bucket and their
    sums; a label set only one worker has is kept as it is."""
    total: Snapshot = {
        "wsgate_open_connections": {(): 2},
        "wsgate_connects": {("101",): 2, ("401",): 1},
        "wsgate_handler_duration_seconds": {("echo",): ([1, 0, 2], 0.5)},
    }
    add(
        total,
        {
            "wsgate_open_connections": {(): 3},
            "wsgate_connects": {("101",): 3},
            "wsgate_handler_duration_seconds": {
                ("echo",): ([0, 1, 1], 0.25),
                ("join",): ([1, 0, 0], 0.001),
            },
            "wsgate_sends_gone": {(): 1},
        },
    )
    assert total == {
        "wsgate_open_connections": {(): 5},
        "wsgate_connects": {("101",): 5, ("401",): 1},
        "wsgate_handler_duration_seconds": {
            ("echo",): ([1, 1, 3], 0.75),
            ("join",): ([1, 0, 0], 0.001),
        },
        "wsgate_sends_gone": {(): 1},
    }


def test_exposition_of_a_snapshot_is_cumulative_prometheus_text() -> None:
    """Bucket counts are kept apart and rendered cumulative, with +Inf, _count and _sum."""
    counts = [0] * 16
    counts[0], counts[3], counts[15] = 2, 1, 1  # 0.5 ms, 5 ms, over 30 s
    body = exposition({"wsgate_handler_duration_seconds": {("echo",): (counts, 31.01)}})
    assert body is not None
    text = body.decode()
    assert 'wsgate_handler_duration_seconds_bucket{le="0.0005",route="echo"} 2.0' in text
    assert 'wsgate_handler_duration_seconds_bucket{le="0.005",route="echo"} 3.0' in text
    assert 'wsgate_handler_duration_seconds_bucket{le="+Inf",route="echo"} 4.0' in text
    assert 'wsgate_handler_duration_seconds_count{route="echo"} 4.0' in text
    assert "# TYPE wsgate_open_connections gauge" in text  # every family, even empty
