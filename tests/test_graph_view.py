"""Graph view of one group's rollouts: structure checked against SPEC.md's worked example by hand."""

import json
import random
import xml.etree.ElementTree as ET

import pytest

from graphgpo import StepBatch
from graphgpo.analysis.diagnostics import compute_method_outputs
from graphgpo.analysis.graph import build_group_graph, state_labels
from graphgpo.analysis.graph_html import graph_html
from graphgpo.analysis.graph_plot import plot_group_graph
from graphgpo.cli import main
from test_diagnostics import spec_example, traj_rows


def graph_of(records, omega=0.1, group=0):
    batch = StepBatch.from_records(records)
    outputs = compute_method_outputs(batch, backend="reference", omega=omega)
    return build_group_graph(batch, outputs, group, labels=state_labels(records))


def edges_by_label(graph):
    return {(graph.nodes[e.source].label, graph.nodes[e.target].label): e for e in graph.edges}


def test_spec_example_nodes_edges_and_distances():
    graph = graph_of(spec_example())
    # Nodes A, B, C, D and the sink (T1's last step B->G goes to SUCCESS, so G is no node).
    assert sorted(n.label for n in graph.nodes) == ["A", "B", "C", "D", "SUCCESS"]
    assert {n.label: n.distance for n in graph.nodes} == {"A": 2, "B": 1, "C": 2, "D": 3, "SUCCESS": 0}
    assert [n.label for n in graph.nodes if n.is_start] == ["A"]
    assert graph.unreachable_distance == 3  # D cannot reach SUCCESS
    edges = edges_by_label(graph)
    assert {k: e.count for k, e in edges.items()} == {
        ("A", "B"): 1, ("B", "SUCCESS"): 1, ("A", "C"): 2, ("C", "D"): 1, ("C", "B"): 1, ("B", "C"): 1}
    assert edges[("A", "C")].successes == 0 and edges[("A", "B")].successes == 1
    # GRPO (rewards 10, 0, 0): success +1.1547, failures -0.5774 (hand-computed, see test_diagnostics).
    assert edges[("A", "B")].advantage["grpo"] == pytest.approx(1.1547005, abs=1e-6)
    assert edges[("A", "C")].advantage["grpo"] == pytest.approx(-0.5773503, abs=1e-6)
    # GraphGPO credits the progress step C->B of a failed trajectory: +0.7071 - 0.5855.
    assert edges[("C", "B")].advantage["graphgpo"] == pytest.approx(0.1215668, abs=1e-5)
    assert graph.num_trajectories == 3 and graph.num_successes == 1


def test_layout_puts_nodes_at_their_distance_without_overlaps():
    graph = graph_of(spec_example())
    assert all(n.x == n.distance for n in graph.nodes)  # small columns are not folded
    positions = [(n.x, n.y) for n in graph.nodes]
    assert len(set(positions)) == len(positions)


def test_crowded_column_is_folded_near_its_distance():
    # 20 failed walks A -> Xk from one start: 20 unreachable nodes in one column, plus a success A -> B -> G.
    records = traj_rows(0, 0, ["A", "B", "G"], True)
    for k in range(1, 21):
        records += traj_rows(0, k, ["A", f"X{k}"], False)
    graph = graph_of(records, omega=0.5)
    far = [n for n in graph.nodes if n.label.startswith("X")]
    assert {n.distance for n in far} == {3.0} and graph.unreachable_distance == 3.0
    assert all(abs(n.x - 3.0) <= 0.3 + 1e-9 for n in far)
    assert len({n.x for n in far}) == 3  # ceil(20 / 9) sub-columns
    assert max(n.y for n in far) - min(n.y for n in far) < 9
    assert len({(n.x, n.y) for n in graph.nodes}) == len(graph.nodes)


def test_graph_does_not_depend_on_row_order():
    records = spec_example()
    shuffled = list(records)
    random.Random(7).shuffle(shuffled)
    a, b = graph_of(records), graph_of(shuffled)
    assert {n.label: (n.x, n.y) for n in a.nodes} == {n.label: (n.x, n.y) for n in b.nodes}
    ea, eb = edges_by_label(a), edges_by_label(b)
    assert ea.keys() == eb.keys()
    for key in ea:
        assert ea[key].advantage == pytest.approx(eb[key].advantage)


def test_group_without_success_has_no_sink():
    records = traj_rows(0, 1, ["A", "B", "B"], False) + traj_rows(0, 2, ["A", "C"], False)
    graph = graph_of(records, omega=0.8)
    assert "SUCCESS" not in {n.label for n in graph.nodes}
    assert {n.distance for n in graph.nodes} == {1.0}
    assert graph.unreachable_distance is None
    assert edges_by_label(graph)[("B", "B")].is_loop


def test_second_group_is_drawn_alone():
    records = spec_example(group=0) + traj_rows(1, 9, ["X", "Y", "Z"], True)
    graph = graph_of(records, group=1)
    assert sorted(n.label for n in graph.nodes) == ["SUCCESS", "X", "Y"]
    with pytest.raises(ValueError, match="group"):
        graph_of(records, group=2)


def test_png_svg_and_html_are_written(tmp_path):
    graph = graph_of(spec_example())
    paths = plot_group_graph(graph, tmp_path / "g")
    assert [p.name for p in paths] == ["g.png", "g.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in paths[1].read_text()
    page = graph_html(graph)
    svg = page[page.index('<svg id="graph"'):page.index("</svg>", page.index('<svg id="graph"')) + 6]
    root = ET.fromstring(svg)  # well-formed inline SVG
    edges = [el for el in root.iter() if el.get("class") == "edge"]
    assert len(edges) == 6
    infos = [json.loads(el.get("data-info")) for el in edges]
    assert {(i["from"], i["to"]) for i in infos} == set(edges_by_label(graph))
    assert all(el.get(f"data-c-{m}", "").startswith("#") for el in edges for m in graph.methods)
    assert "<script src" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_viz_without_checkpoint_uses_a_random_policy(tmp_path, capsys):
    from graphgpo.trainer.config import TrainConfig

    run = tmp_path / "run"
    run.mkdir()
    cfg = TrainConfig(num_generations=4, output_dir=str(run))
    (run / "config.yaml").write_text(cfg.to_yaml())
    assert main(["viz", str(run), "--task", "2", "--out", str(tmp_path / "viz")]) == 0
    for suffix in (".png", ".svg", ".html", "_diagnostics.json"):
        assert (tmp_path / "viz" / f"task2{suffix}").is_file()
    info = json.loads((tmp_path / "viz" / "task2_diagnostics.json").read_text())
    assert info["policy"] == "random policy" and info["omega"] == 0.8
    assert info["failed_steps"] + info["success_steps"] > 0
    assert "random policy" in capsys.readouterr().out
