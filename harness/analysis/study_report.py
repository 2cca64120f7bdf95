"""A study as plots and pages people can read without the JSON (`python -m harness.report` writes them).

Writes DIR/report.html and DIR/report.md, and beside them PNG plots:
- accuracy.png: every trial's test metric per condition (identical runs fall on one point);
- sd_by_source.png: each condition's SD with its 95% interval, beside `all`'s;
- churn.png: each condition's churn (the share of test examples two runs predict differently) with its interval;
- unstable_examples.png: the test examples the most runs of a condition predict differently (images, or
  curves for 1-D data);
- step_time.png: steady-state step time per condition, op determinism on vs off;
- loss_curves.png: per-epoch train loss of every trial, one panel per condition;
the failed trials with their reasons, and the environment the study ran in as a table.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Files only: no display on CI or in containers.
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)

from harness.analysis import stats  # noqa: E402
from harness.analysis.summary import (  # noqa: E402
    COMPONENT_NAMES,
    condition_table,
    load_summary,
    trainer_text,
)
from harness.errors import UsageError  # noqa: E402
from harness.schema import TRIALS_FILE  # noqa: E402
from harness.studies import conditions  # noqa: E402
from harness.studies.records import read_records  # noqa: E402
from harness.trial.config import TrialConfig  # noqa: E402
from harness.trial.datasets import dataset_of  # noqa: E402

DETERMINISTIC, NONDETERMINISTIC, ALL = "#1f77b4", "#d62728", "#ff7f0e"


def build_report(input_dir: Path, output_dir: Path) -> list[Path]:
    """Writes the plots, report.html and report.md; returns the paths written."""
    summary = load_summary(input_dir)
    records = [r for r in read_records(input_dir / TRIALS_FILE) if r.get("study_id") == summary["study_id"]]
    if not records:
        raise UsageError(f"{input_dir / TRIALS_FILE} holds no trial records of study {summary['study_id']}; "
                         "the report plots every trial")
    output_dir.mkdir(parents=True, exist_ok=True)
    plots = {
        "accuracy.png": ("Every trial's result, per condition", _metric_strip(summary, records)),
        "sd_by_source.png": ("Spread of each condition, as a share of all sources", _sd_bars(summary)),
        "churn.png": ("Churn: the share of test examples two runs of a condition predict differently",
                      _churn_bars(summary)),
        "step_time.png": ("Steady-state step time: op determinism on vs off", _step_times(summary)),
        "loss_curves.png": ("Training loss of every trial, per condition", _loss_curves(summary, records)),
    }
    unstable = _unstable_examples(summary, records)
    if unstable:
        plots["unstable_examples.png"] = unstable
    plots = {name: plot for name, plot in plots.items() if plot[1] is not None}
    written = []
    for name, (_, figure) in plots.items():
        figure.savefig(output_dir / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(output_dir / name)
    captions = [(name, caption) for name, (caption, _) in plots.items()]
    environment = inputs_rows(records[0]) + environment_rows(summary["environment"])
    failures = failure_rows(records)
    (output_dir / "report.html").write_text(_html(summary, captions, environment, failures))
    (output_dir / "report.md").write_text(_markdown(summary, captions, environment, failures))
    return written + [output_dir / "report.html", output_dir / "report.md"]


def _metric_scale(summary: dict[str, Any]) -> tuple[str, float]:
    metric = summary["primary_metric"]
    return metric, stats.display_scale(metric)


def _label(summary: dict[str, Any]) -> str:
    return "test accuracy (%)" if summary["primary_metric"] == "test_accuracy" else "test loss"


def _metric_strip(summary: dict[str, Any], records: list[dict[str, Any]]) -> plt.Figure:
    """No horizontal jitter on purpose: bitwise-identical runs must look like one point."""
    metric, scale = _metric_scale(summary)
    rows = summary["conditions"]
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4.2))
    for x, row in enumerate(rows):
        values = [r["metrics"][metric] * scale for r in records if r["condition"] == row["name"]
                  and r["status"]["code"] == "ok" and r["metrics"].get(metric) is not None]
        color = DETERMINISTIC if row["determinism"] else NONDETERMINISTIC
        if len(set(values)) > 1:
            axes.boxplot([values], positions=[x], widths=0.5, showfliers=False,
                         medianprops={"color": color}, boxprops={"color": "#999999"},
                         whiskerprops={"color": "#999999"}, capprops={"color": "#999999"})
        axes.scatter([x] * len(values), values, s=22, color=color, alpha=0.5, zorder=3)
        if values:
            axes.annotate(f"{row['unique_weight_hashes']}/{row['n_ok']}", (x, max(values)), textcoords="offset points",
                          xytext=(0, 6), ha="center", fontsize=8, color="#444444")
    axes.set_xticks(range(len(rows)), [row["name"] for row in rows], rotation=30, ha="right")
    axes.set_ylabel(_label(summary))
    axes.set_title(f"{summary['benchmark']}: {summary['repeats']} repeats per condition "
                   "(label: unique weight hashes / ok runs)", fontsize=10)
    axes.scatter([], [], color=DETERMINISTIC, label="op determinism on")
    axes.scatter([], [], color=NONDETERMINISTIC, label="op determinism off")
    axes.legend(fontsize=8, loc="best")
    axes.grid(axis="y", alpha=0.3)
    return figure


def _sd_bars(summary: dict[str, Any]) -> plt.Figure:
    metric, scale = _metric_scale(summary)
    rows = [row for row in summary["conditions"] if row[metric]]
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    for y, row in enumerate(rows):
        described = row[metric]
        sd, interval = described["sd"] * scale, described["sd_ci95"]
        axes.barh(y, sd, color=_bar_color(row), alpha=0.8)
        if interval:
            axes.errorbar(sd, y, xerr=[[sd - interval[0] * scale], [interval[1] * scale - sd]], fmt="none",
                          ecolor="#333333", capsize=3)
        share = f"{row['sd_share_of_all']:.0%} of all" if row["sd_share_of_all"] is not None else ""
        axes.annotate(f"{sd:.3g}  {share}", (sd, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    floors = [row["noise_floor"] for row in rows if row["noise_floor"]]
    right = max([1e-12] + [(row[metric]["sd_ci95"] or [0, row[metric]["sd"]])[1] * scale for row in rows]) * 1.25
    if floors:
        # The floor is drawn only where it leaves the bars readable; far beyond them it is a label on the
        # right edge, so a large floor does not squash every bar into the left margin.
        floor = floors[0] * scale
        if floor <= right * 2:
            right = max(right, floor * 1.1)
            axes.axvline(floor, color="#777777", linestyle="--", linewidth=1,
                         label=f"test-set noise floor sqrt(p(1-p)/n) = {floor:.3g}")
            axes.legend(fontsize=8, loc="lower right")
        else:
            axes.annotate(f"test-set noise floor sqrt(p(1-p)/n) = {floor:.3g}, off this scale \u2192",
                          (1, 0), xycoords="axes fraction", xytext=(-4, 4), textcoords="offset points",
                          ha="right", va="bottom", fontsize=8, color="#555555")
    axes.set_xlim(0, right)
    axes.set_yticks(range(len(rows)), [row["name"] for row in rows])
    axes.invert_yaxis()
    axes.set_xlabel(f"SD of {_label(summary)} with its 95% chi-square interval")
    axes.grid(axis="x", alpha=0.3)
    return figure


def _bar_color(row: dict[str, Any]) -> str:
    """`all` in orange; other conditions blue with op determinism on, red with it off."""
    if row["name"] == conditions.ALL:
        return ALL
    return DETERMINISTIC if row["determinism"] else NONDETERMINISTIC


def _churn_bars(summary: dict[str, Any]) -> plt.Figure | None:
    rows = [row for row in summary["conditions"] if row["mean_pairwise_disagreement"] is not None]
    if not rows:
        return None
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    for y, row in enumerate(rows):
        churn, interval = row["mean_pairwise_disagreement"] * 100, row.get("disagreement_ci95")
        axes.barh(y, churn, color=_bar_color(row), alpha=0.8)
        if interval:
            axes.errorbar(churn, y, xerr=[[churn - interval[0] * 100], [interval[1] * 100 - churn]], fmt="none",
                          ecolor="#333333", capsize=3)
        axes.annotate(f"{churn:.2f}%", (churn, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes.set_yticks(range(len(rows)), [row["name"] for row in rows])
    axes.invert_yaxis()
    axes.set_xlabel("churn: % of test examples two runs predict differently (mean over pairs), with its 95% "
                    "interval over runs and examples")
    axes.set_xlim(left=0)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _unstable_examples(summary: dict[str, Any], records: list[dict[str, Any]]):
    """The most unstable test examples of the condition that changes the most of them, as the data shows
    them (images, or curves for 1-D examples); None when no run changed a prediction or the data cannot be
    loaded here as it was (another machine's file, arrays handed over in Python)."""
    rows = [row for row in summary["conditions"] if (row.get("unstable_examples") or {}).get("most_unstable")]
    if not rows:
        return None
    row = max(rows, key=lambda r: r["unstable_examples"]["changed_examples"])
    unstable = row["unstable_examples"]
    try:
        dataset = dataset_of(TrialConfig(**summary["config"]))
    except Exception:  # noqa: BLE001  The report still stands without the pictures.
        return None
    if dataset.sha256 != records[0]["data"]["sha256"] or dataset.several_inputs:
        return None  # other data, or several inputs: no one picture of an example
    shown = unstable["most_unstable"]
    columns = min(4, len(shown))
    lines = math.ceil(len(shown) / columns)
    figure, panels = plt.subplots(lines, columns, figsize=(2.0 * columns, 2.5 * lines), squeeze=False)
    for panel in panels.flat[len(shown):]:
        panel.axis("off")
    for panel, example in zip(panels.flat, shown, strict=False):
        x = dataset.test_x[example["index"]]
        if x.ndim >= 2:
            panel.imshow(x.squeeze(), cmap="gray_r")
        else:
            panel.plot(x, linewidth=1, color="#333333")
        panel.set_xticks([])
        panel.set_yticks([])
        panel.set_title(f"#{example['index']}: label {int(dataset.test_y[example['index']])}\n"
                        f"predicted {', '.join(map(str, example['classes']))}\n"
                        f"{example['runs_off_majority']}/{unstable['runs']} runs off", fontsize=7)
    caption = (f"The test examples `{row['name']}` changes most: {unstable['changed_examples']} of "
               f"{dataset.test_y.shape[0]} examples get another prediction in at least one of its "
               f"{unstable['runs']} runs")
    return caption, figure


def failure_rows(records: list[dict[str, Any]]) -> list[tuple[str, int, str, str]]:
    """(condition, repeat, status code, message) of every failed trial, in the study's order."""
    return [(r["condition"], r["repeat"], r["status"]["code"], r["status"].get("message") or "")
            for r in sorted(records, key=lambda r: (r["condition"], r["repeat"])) if r["status"]["code"] != "ok"]


def _step_times(summary: dict[str, Any]) -> plt.Figure:
    rows = [row for row in summary["conditions"] if row["step_ms"]]
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4))
    for x, row in enumerate(rows):
        color = DETERMINISTIC if row["determinism"] else NONDETERMINISTIC
        axes.boxplot([row["step_ms"]], positions=[x], widths=0.5, showfliers=False, medianprops={"color": color})
        axes.scatter([x] * len(row["step_ms"]), row["step_ms"], s=14, color=color, alpha=0.5, zorder=3)
    axes.set_xticks(range(len(rows)), [row["name"] for row in rows], rotation=30, ha="right")
    axes.set_ylabel("median steady-state step time per trial (ms)")
    kernels = next((row for row in rows if row["name"] == conditions.KERNELS), None)
    title = "blue: op determinism on, red: off"
    cost = summary.get("determinism_cost") or {}
    if cost.get("ratio") and cost.get("ci95"):
        title += f"; op determinism on/off = {cost['ratio']:.2f}x [{cost['ci95'][0]:.2f}, {cost['ci95'][1]:.2f}] " \
                 f"(interleaved)"
    elif kernels and kernels["step_time_ratio_vs_control"]:
        title += f"; kernels/control ~{kernels['step_time_ratio_vs_control']['ratio']:.2f}x (timed apart)"
    axes.set_title(title, fontsize=10)
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)
    return figure


def _loss_curves(summary: dict[str, Any], records: list[dict[str, Any]]) -> plt.Figure:
    rows = summary["conditions"]
    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure, grid = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.4 * lines), sharex=True, sharey=True,
                                squeeze=False)
    for axes, row in zip(grid.flat, rows, strict=False):
        color = DETERMINISTIC if row["determinism"] else NONDETERMINISTIC
        for record in records:
            curve = record["metrics"].get("epoch_train_loss") if record["condition"] == row["name"] else None
            if curve:
                axes.plot(range(1, len(curve) + 1), curve, color=color, alpha=0.35, linewidth=1)
        axes.set_title(row["name"], fontsize=9)
        axes.grid(alpha=0.3)
    for axes in grid.flat[len(rows):]:
        axes.set_visible(False)
    figure.supxlabel("epoch")
    figure.supylabel("mean train loss")
    figure.tight_layout()
    return figure


def inputs_rows(record: dict[str, Any]) -> list[tuple[str, str]]:
    """What was trained on what, from a trial record's `model` and `data` blocks (records from before
    they were written have neither)."""
    model, data = record.get("model") or {}, record.get("data") or {}
    if not model:
        return []
    args = ", ".join(f"{name}={value}" for name, value in (model.get("args") or {}).items())
    layers = ", ".join(f"{layer['class']}" for layer in model.get("architecture") or [])
    optimizer = model.get("optimizer") or {}
    rate = optimizer.get("learning_rate")
    rate = f"{rate:.4g}" if isinstance(rate, (int, float)) else rate  # a schedule is recorded by name
    rows = [
        ("model", model.get("spec") + (f" ({args})" if args else "")),
        ("model source sha256", model.get("source_sha256") or "the harness's built-in model"),
        ("model layers", f"{layers}; {_parameters_in_words(model)}"),
        ("optimizer, loss, task", f"{optimizer.get('class')} (learning rate {rate}), "
                                  f"{model.get('loss')}, {model.get('task')}"),
        ("data", f"{data.get('spec')}: {data.get('train_examples')} training and {data.get('test_examples')} test "
                 f"examples of shape {_shape_in_words(data.get('example_shape'))}"),
        ("data sha256", data.get("sha256")),
    ]
    return [(name, str(value)) for name, value in rows]


def _parameters_in_words(model: dict[str, Any]) -> str:
    """`9,978 parameters (9,946 trainable)`: every weight the fingerprint covers, and those training updates."""
    total, trainable = model.get("parameters"), model.get("trainable_parameters")
    if total is None:
        return "parameters not recorded"
    return f"{total:,} parameters" + (f" ({trainable:,} trainable)" if trainable not in (None, total) else "")


def _shape_in_words(shape: Any) -> str:
    """One example's shape, or each input's for several inputs."""
    if isinstance(shape, dict):
        return ", ".join(f"{name} {tuple(value)}" for name, value in shape.items())
    if shape and isinstance(shape[0], list):
        return ", ".join(f"#{index} {tuple(value)}" for index, value in enumerate(shape))
    return str(tuple(shape or ()))


def environment_rows(environment: dict[str, Any]) -> list[tuple[str, str]]:
    """The environment as (what, value) rows: everything a reader needs to reproduce the numbers."""
    tf_info = environment.get("tensorflow", {})
    build = tf_info.get("build_info", {})
    cpu = environment.get("cpu", {})
    container = environment.get("container") or {}
    threads = environment.get("threads") or {}
    gpus = environment.get("gpus") or []
    rows = [
        ("harness", environment.get("harness_version")),
        ("TensorFlow", f"{tf_info.get('version')} ({tf_info.get('git_version')})"),
        ("built with CUDA / cuDNN", f"{build.get('cuda_version', 'none')} / {build.get('cudnn_version', 'none')}"),
        ("Keras", environment.get("keras") or "not recorded"),
        ("Python", environment.get("python")),
        ("OS", environment.get("os")),
        ("CPU", f"{cpu.get('model')}, {cpu.get('usable_cores')} usable of {cpu.get('logical_cores')} logical cores"),
        ("GPUs", "; ".join(f"{g.get('name')} (cc {g.get('compute_capability')}, driver {g.get('driver_version')})"
                           for g in gpus) or "none"),
        ("container image", f"{container.get('image') or 'none'} {container.get('digest') or ''}".strip()),
        ("threads intra / inter (0 = TF default)", f"{threads.get('intra_op')} / {threads.get('inter_op')}"),
        ("oneDNN", "on" if environment.get("onednn_enabled") else "off"),
    ]
    rows += [(name, value) for name, value in (environment.get("env_vars") or {}).items()]
    return [(name, str(value)) for name, value in rows]


def cost_tables(summary: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str], list[list[str]], str]:
    """The price of determinism for the report: (headers, a row per component, ops headers, a row per op that
    pays, a sentence where there is no op to list). Empty rows where the study has no cost measurement."""
    cost = summary.get("determinism_cost") or {}
    headers = ["component", "A", "B", "B / A", "95% CI", "blocks", "steps per block"]
    rows = []
    for name, component in (cost.get("components") or {}).items():
        if component["measured"] and component["ratio"]:
            ci = component["ci95"]
            rows.append([COMPONENT_NAMES.get(name, name), component["a"], component["b"], f"{component['ratio']:.3f}x",
                         f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "one block pair", str(component["blocks"]),
                         str(component.get("steps_per_block", "-"))])
        else:
            rows.append([COMPONENT_NAMES.get(name, name), component["a"], component["b"], "not measured",
                         component.get("reason", ""), "-", "-"])
    ops = cost.get("ops_that_pay") or {}
    op_headers = ["op", "what", "ms per step, off", "ms per step, on"]
    op_rows = [[row["op"], row.get("what") or "", _ms(row["off_ms_per_step"]), _ms(row["on_ms_per_step"])]
               for row in ops.get("ops") or []]
    return headers, rows, op_headers, op_rows, "" if op_rows else (ops.get("note") or "")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _cost_html(summary: dict[str, Any]) -> str:
    esc = html.escape
    headers, rows, op_headers, op_rows, note = cost_tables(summary)
    if not rows:
        return "<p>Not measured: the study has no control and kernels (or ran with --cost_blocks=0).</p>"

    def table(head: list[str], body: list[list[str]]) -> str:
        return "<table>\n<tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>\n" + "\n".join(
            "<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in body) + "\n</table>"

    method = esc((summary.get("determinism_cost") or {}).get("method", ""))
    ops = table(op_headers, op_rows) if op_rows else f"<p>{esc(note[0].upper() + note[1:])}.</p>" if note else ""
    return f"{table(headers, rows)}\n<p>Method: {method}.</p>\n<h3>Ops that pay</h3>\n{ops}"


def _cost_markdown(summary: dict[str, Any]) -> list[str]:
    headers, rows, op_headers, op_rows, note = cost_tables(summary)
    if not rows:
        return ["Not measured: the study has no control and kernels (or ran with --cost_blocks=0)."]

    def table(head: list[str], body: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + [
            "| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in body]

    lines = table(headers, rows) + ["", f"Method: {summary['determinism_cost']['method']}.", "", "### Ops that pay", ""]
    return lines + (table(op_headers, op_rows) if op_rows else [note[0].upper() + note[1:] + "."] if note else [])


def answer(summary: dict[str, Any]) -> list[str]:
    """The summary's findings, then a re-evaluation's (harness.reeval) against the tuned score."""
    return summary["findings"] + (summary.get("comparison") or {}).get("findings", [])


def _html(summary: dict[str, Any], captions: list[tuple[str, str]], environment: list[tuple[str, str]],
          failures: list[tuple[str, int, str, str]]) -> str:
    esc = html.escape
    figures = "\n".join(f'<figure><img src="{name}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption>'
                        "</figure>" for name, caption in captions)
    env_rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in environment)
    findings = "\n".join(f"<li>{esc(line)}</li>" for line in answer(summary))
    headers, rows = condition_table(summary)
    table = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr>\n" + "\n".join(
        "<tr>" + "".join(f"<td>{esc(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    failed = "<p>Every trial finished.</p>" if not failures else "<table>\n<tr><th>condition</th><th>repeat</th>" \
        "<th>status</th><th>why</th></tr>\n" + "\n".join(
            f"<tr><td>{esc(c)}</td><td>{r}</td><td>{esc(code)}</td><td>{esc(why)}</td></tr>"
            for c, r, code, why in failures) + "\n</table>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(summary['benchmark'])}: why does the accuracy vary?</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9em; }}
table {{ border-collapse: collapse; font-size: 0.8em; width: 100%; }}
th, td {{ text-align: left; padding: 0.2em 0.4em; border-bottom: 1px solid #ddd; vertical-align: top;
          overflow-wrap: anywhere; }}
/* A number is never broken across lines; the words of `varies` and of the headers wrap instead. */
table.conditions td {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
table.conditions td:nth-child(2), table.conditions th {{ white-space: normal; overflow-wrap: normal; }}
</style></head><body>
<h1>{esc(summary['benchmark'])}: why does the accuracy vary?</h1>
<p>Study {esc(summary['study_id'])}{esc(trainer_text(summary))}, {summary['repeats']} repeats per condition,
created {esc(summary['created_at'])}.</p>
<h2>Answer</h2>
<ul>
{findings}
</ul>
<h2>Per condition</h2>
<table class="conditions">
{table}
</table>
<h2>The price of determinism</h2>
{_cost_html(summary)}
<h2>Failed trials</h2>
{failed}
<h2>Plots</h2>
{figures}
<h2>Environment</h2>
<table>
{env_rows}
</table>
</body></html>
"""


def _markdown(summary: dict[str, Any], captions: list[tuple[str, str]], environment: list[tuple[str, str]],
              failures: list[tuple[str, int, str, str]]) -> str:
    lines = [f"# {summary['benchmark']}: why does the accuracy vary?", "",
             f"Study {summary['study_id']}{trainer_text(summary)}, {summary['repeats']} repeats per condition, "
             f"created {summary['created_at']}.", "", "## Answer", ""]
    lines += [f"- {line}" for line in answer(summary)]
    headers, rows = condition_table(summary)
    lines += ["", "## Per condition", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    lines += ["", "## The price of determinism", "", *_cost_markdown(summary)]
    lines += ["", "## Failed trials", ""]
    lines += [f"- {c} repeat {r}: {code}: {why}" for c, r, code, why in failures] or ["Every trial finished."]
    lines += ["", "## Plots", ""]
    for name, caption in captions:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in environment]
    return "\n".join(lines) + "\n"
