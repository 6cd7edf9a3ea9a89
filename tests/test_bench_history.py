"""lab/bench/history.py: Prometheus's answers read (captured from the lab's
monitoring server), the queries asked, and the report's plots of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_bench_report import PNG, RESULTS

from lab.bench import history, report

FIXTURES = Path(__file__).parent / "fixtures" / "prometheus"


def test_a_matrix_answer_becomes_one_labelled_series_per_node():
    answer = (FIXTURES / "query_range_vrrp_master.json").read_text()
    series = history.parse_matrix(answer, "{node}")
    assert [s["label"] for s in series] == ["master", "standby"]
    master = series[0]["points"]
    assert all(isinstance(t, float) and v in (0.0, 1.0) for t, v in master)
    assert master == sorted(master), "points in time order"


def test_an_error_answer_says_what_prometheus_said():
    answer = (FIXTURES / "query_range_bad_query.json").read_text()
    with pytest.raises(ValueError, match=r"Prometheus: bad_data: .*parse error"):
        history.parse_matrix(answer, "{node}")


def test_an_instant_answer_is_not_taken_for_a_range():
    answer = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
    with pytest.raises(ValueError, match="a vector, not a matrix"):
        history.parse_matrix(answer, "{node}")


def test_a_label_the_series_lacks_reads_as_a_question_mark():
    answer = json.dumps(
        {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "2"]]}]}}
    )
    assert history.parse_matrix(answer, "{node} 5xx") == [{"label": "? 5xx", "points": [[1.0, 2.0]]}]


@pytest.mark.parametrize(("text", "seconds"), [("15s", 15), ("1m", 60), ("500ms", 0.5), ("2h", 7200)])
def test_prometheus_durations(text, seconds):
    assert history.duration_s(text) == seconds


@pytest.mark.parametrize("text", ["15", "1m30s", "s", "-5s", "fast"])
def test_a_duration_of_another_shape_is_refused(text):
    with pytest.raises(ValueError, match=repr(text)):
        history.duration_s(text)


def test_the_formula_scrapes_at_an_interval_the_bench_reads():
    defaults = history.prometheus_defaults()
    assert history.duration_s(defaults["interval"]) > 0 and int(defaults["port"]) > 0


def test_each_value_of_a_query_is_its_own_url_encoded_argument():
    expr = 'sum by (node) (haproxy_server_status{state="UP"})'
    argv = history.query_range_argv(expr, 1000.25, 1090.5, 15, 9090)
    assert argv[:6] == ["curl", "-s", "-m", "20", "-G", "http://127.0.0.1:9090/api/v1/query_range"]
    assert argv[6:] == [
        "--data-urlencode",
        f"query={expr}",
        "--data-urlencode",
        "start=1000.250",
        "--data-urlencode",
        "end=1090.500",
        "--data-urlencode",
        "step=15",
    ]


def test_a_drills_window_runs_from_before_the_fault_to_after_recovery():
    row = {"name": "web node cut", "injected_at": 1000.0, "healed_at": 1010.0, "recovery_s": 4.0}
    assert history.window(row) == (1000.0 - history.LEAD_S, 1014.0 + history.TAIL_S)
    assert history.window({"name": "flow", "injected_at": 1000.0, "healed_at": 1003.0, "recovery_s": None}) == (
        1000.0 - history.LEAD_S,
        1003.0 + history.TAIL_S,
    )
    assert history.window({"name": "control"}) is None


def test_collect_asks_every_query_of_every_panel():
    asked = []

    def ask(argv: list[str]) -> str:
        asked.append(argv)
        query = next(a for a in argv if a.startswith("query="))
        node = "master" if "haproxy" in query else "standby"
        result = [{"metric": {"node": node}, "values": [[1000, "1"], [1015, "0"]]}]
        return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})

    got = history.collect(970.0004, 1045.0, ask, 15, 9090)
    assert len(asked) == sum(len(p.queries) for p in history.PANELS)
    assert [p["title"] for p in got["panels"]] == [p.title for p in history.PANELS]
    errors = got["panels"][-1]
    assert [s["label"] for s in errors["series"]] == ["master connection errors", "master 5xx"]
    assert got["step_s"] == 15 and (got["start"], got["end"]) == (970.0, 1045.0)


def drill_with_history() -> dict:
    series = [{"label": "master", "points": [[970.0, 1.0], [985.0, 1.0], [1000.0, 0.0], [1015.0, 1.0]]}]
    panels = [{"title": p.title, "unit": p.unit, "series": series} for p in history.PANELS]
    panels[2]["series"] = []
    window = {"injected_at": 1000.0, "healed_at": 1010.0}
    return {
        **RESULTS["drills"][0],
        **window,
        "history": {"step_s": 15, "start": 970.0, "end": 1043.0, "panels": panels},
    }


def test_each_drill_with_a_history_gets_its_plot_and_its_section(tmp_path: Path):
    unanswered = {**RESULTS["drills"][1], "injected_at": 1.0, "healed_at": 2.0, "history": {"error": "curl exit 7"}}
    results = {"meta": {}, "drills": [drill_with_history(), unanswered]}
    written = report.render(results, tmp_path)
    plot = tmp_path / "history-director-cable-cut.png"
    assert plot in written and plot.read_bytes().startswith(PNG) and plot.stat().st_size > 20000
    assert not list(tmp_path.glob("history-web*"))
    text = (tmp_path / "report.md").read_text()
    section = text[text.index("## Around each drill, as Prometheus recorded it") :]
    assert "One sample every 15 s" in section
    assert "### director cable cut\n\n![history-director-cable-cut.png](history-director-cable-cut.png)" in section
    assert "### web node cut\n\nNo history: curl exit 7" in section
    assert "![history-director-cable-cut.png]" not in text[: text.index("## Around each drill")]


def test_a_line_breaks_where_prometheus_had_no_sample():
    xs, ys = report.with_gaps([[0.0, 1.0], [15.0, 1.0], [60.0, 0.0], [75.0, 0.0]], 15)
    assert xs == [0.0, 15.0, 30.0, 60.0, 75.0]
    assert ys[:2] == [1.0, 1.0] and ys[2] != ys[2] and ys[3:] == [0.0, 0.0]
    assert report.with_gaps([[0.0, 1.0], [15.0, 2.0]], 15) == ([0.0, 15.0], [1.0, 2.0])


def test_a_flow_drill_gets_its_plot_too(tmp_path: Path):
    flow = {**drill_with_history(), "name": "flow through ipvs/nat"}
    assert report.history_file(flow) == "history-flow-through-ipvs-nat.png"
    assert [p.name for p in report.history_plots({"flows": [flow]}, tmp_path)] == [report.history_file(flow)]


def test_a_report_without_histories_has_no_such_section(tmp_path: Path):
    report.render(RESULTS, tmp_path)
    assert "Around each drill" not in (tmp_path / "report.md").read_text()
