"""A study as plots and pages people can read without the JSON (`python -m harness.report` writes them).

Writes DIR/report.html and DIR/report.md, each opening with the answer in short (summary.verdict_lines: a phone's
first screen), and beside them PNG plots:
- accuracy.png: every trial's test metric per condition (identical runs fall on one point);
- sd_by_source.png: each condition's SD with its 95% interval, beside `all`'s;
- churn.png: each condition's churn (the share of test examples two runs predict differently) with its interval;
- unstable_examples.png: the test examples the most runs of a condition predict differently (images, or
  curves for 1-D data);
- step_time.png: steady-state step time per condition, op determinism on vs off;
- loss_curves.png: per-epoch train loss of every trial, one panel per condition;
the failed trials with their reasons, and the environment the study ran in as a table.
Each plot also as NAME.narrow.png, drawn for phones. The page reads from 390 to 1920 px wide: a wide table
scrolls inside its own box (its first column stays put), never the page, and plots shrink to the screen.
"""

from __future__ import annotations

import html
import math
import re
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # Files only: no display on CI or in containers.
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
import matplotlib.text  # noqa: E402
import matplotlib.ticker  # noqa: E402

from harness.analysis import stats  # noqa: E402
from harness.analysis.summary import (  # noqa: E402
    COMPONENT_NAMES,
    column_legend,
    condition_table,
    load_summary,
    table_notes,
    trainer_text,
    verdict_lines,
)
from harness.errors import UsageError  # noqa: E402
from harness.files import replace_atomically  # noqa: E402
from harness.schema import TRIALS_FILE  # noqa: E402
from harness.studies import conditions  # noqa: E402
from harness.studies.progress import phase  # noqa: E402
from harness.studies.records import read_records  # noqa: E402
from harness.trial.config import TrialConfig  # noqa: E402
from harness.trial.datasets import dataset_of  # noqa: E402

DETERMINISTIC, NONDETERMINISTIC, ALL = "#1f77b4", "#d62728", "#ff7f0e"

# Every plot is drawn twice: NAME.png for wide screens, and NAME.narrow.png, NARROW_WIDTH inches wide so that
# its labels keep a readable size where a phone shows it about 360 CSS px wide; the page shows the narrow one
# on screens up to NARROW_SCREEN. No text in a plot is smaller than SMALLEST_FONT_PT.
DPI, NARROW_DPI = 110, 180
NARROW_WIDTH = 4.0
NARROW_SUFFIX = ".narrow.png"
NARROW_SCREEN = "(max-width: 700px)"
SMALLEST_FONT_PT = 8


def build_report(input_dir: Path, output_dir: Path) -> list[Path]:
    """Writes the plots, report.html and report.md; returns the paths written."""
    summary = load_summary(input_dir)
    records = [r for r in read_records(input_dir / TRIALS_FILE) if r.get("study_id") == summary["study_id"]]
    if not records:
        raise UsageError(f"{input_dir / TRIALS_FILE} holds no trial records of study {summary['study_id']}; "
                         "the report plots every trial")
    output_dir.mkdir(parents=True, exist_ok=True)
    written, captions = [], []
    phase(f"drawing the plots of {len(records)} trials (wide, and narrow for phones) and writing report.html and "
          "report.md")
    for narrow in (False, True):
        for name, (caption, figure) in plots(summary, records, narrow).items():
            path = output_dir / (narrow_name(name) if narrow else name)
            figure.savefig(path, dpi=NARROW_DPI if narrow else DPI, bbox_inches="tight", pad_inches=0.05)
            plt.close(figure)
            written.append(path)
            if not narrow:
                captions.append((name, caption))
    environment = inputs_rows(records[0]) + environment_rows(summary["environment"])
    failures = failure_rows(records)
    # Atomically, and through the one redaction (a failed trial's error can quote a user's secret).
    replace_atomically(output_dir / "report.html", _html(summary, captions, environment, failures))
    replace_atomically(output_dir / "report.md", _markdown(summary, captions, environment, failures))
    return written + [output_dir / "report.html", output_dir / "report.md"]


def narrow_name(name: str) -> str:
    """accuracy.png -> accuracy.narrow.png: the plot drawn for phones."""
    return name.removesuffix(".png") + NARROW_SUFFIX


def plots(summary: dict[str, Any], records: list[dict[str, Any]], narrow: bool = False) -> dict[str, tuple]:
    """{file name: (caption, figure)} of every plot the study has, drawn for wide screens or (narrow) phones;
    each figure laid out, with every label inside its frame."""
    drawn = {
        "accuracy.png": ("Every trial's result, per condition", _metric_strip(summary, records, narrow)),
        "sd_by_source.png": ("Spread of each condition, as a share of all sources", _sd_bars(summary, narrow)),
        "churn.png": ("Churn: the share of test examples two runs of a condition predict differently",
                      _churn_bars(summary, narrow)),
        "step_time.png": ("Steady-state step time: op determinism on vs off", _step_times(summary, narrow)),
        "loss_curves.png": ("Training loss of every trial, per condition", _loss_curves(summary, records, narrow)),
    }
    unstable = _unstable_examples(summary, records, narrow)
    if unstable:
        drawn["unstable_examples.png"] = unstable
    drawn = {name: plot for name, plot in drawn.items() if plot[1] is not None}
    for _, figure in drawn.values():
        _finish(figure)
    return drawn


def _figure(narrow: bool, wide_width: float, height: float, narrow_height: float | None = None,
            **subplots: Any) -> tuple[plt.Figure, Any]:
    """A figure NARROW_WIDTH wide (narrow) or `wide_width`, its subplots laid out so no title or label
    overlaps another (constrained layout)."""
    size = (NARROW_WIDTH, narrow_height or height) if narrow else (wide_width, height)
    return plt.subplots(figsize=size, layout="constrained", **subplots)


def _wrap(text: str, width_in: float, fontsize: float) -> str:
    """Text broken into lines that fit `width_in` inches at `fontsize` points (an average glyph is about
    0.6 em wide in matplotlib's DejaVu Sans)."""
    return textwrap.fill(text, max(16, int(width_in * 72 / (0.6 * fontsize))))


def _finish(figure: plt.Figure) -> None:
    """No Markdown in a plot (`name` shows as name), and every value label inside its axes' frame."""
    for text in figure.findobj(matplotlib.text.Text):
        if "`" in text.get_text():
            text.set_text(text.get_text().replace("`", ""))
    _fit_annotations(figure)


def _fit_annotations(figure: plt.Figure, rounds: int = 6) -> None:
    """Widens each axes' data range to the right and upwards until every label placed at a data point
    (ax.annotate) lies inside the frame. Labels are offset in points, so their reach in data units depends
    on the scale: solved per label, then drawn again because the layout may move the frame."""
    pad = 4 * figure.dpi / 72  # 4 points between a label and the frame, in pixels
    if not any(isinstance(text, matplotlib.text.Annotation) for axes in figure.axes for text in axes.texts):
        return
    for _ in range(rounds):
        figure.draw_without_rendering()  # lays the figure out (constrained layout) and places every text
        renderer = figure.canvas.get_renderer()
        changed = False
        for axes in figure.axes:
            box = axes.get_window_extent(renderer)
            labels = [text for text in axes.texts if isinstance(text, matplotlib.text.Annotation)
                      and text.xycoords == "data" and text.get_visible() and text.get_text()]
            for index, (get_lim, set_lim, size, far_edge) in enumerate((
                    (axes.get_xlim, axes.set_xlim, box.width, lambda e: e.x1),
                    (axes.get_ylim, axes.set_ylim, box.height, lambda e: e.y1))):
                low, high = get_lim()
                if high <= low:  # an inverted axis: labels never run past its far end here
                    continue
                edge = box.x1 if index == 0 else box.y1
                needed = high
                for label in labels:
                    reach = far_edge(label.get_window_extent(renderer))
                    if reach <= edge - pad:
                        continue
                    anchor = axes.transData.transform(label.xy)[index]
                    room = size - (reach - anchor) - pad
                    if room > 0 and label.xy[index] > low:
                        needed = max(needed, low + (label.xy[index] - low) * size / room)
                if needed > high + 1e-9 * (high - low):
                    set_lim(low, needed)
                    changed = True
        if not changed:
            return


def _metric_scale(summary: dict[str, Any]) -> tuple[str, float]:
    metric = summary["primary_metric"]
    return metric, stats.display_scale(metric)


def _label(summary: dict[str, Any]) -> str:
    return "test accuracy (%)" if summary["primary_metric"] == "test_accuracy" else "test loss"


def _condition_ticks(axes: Any, names: list[str], narrow: bool) -> None:
    """Condition names under the x axis, slanted so neighbours do not touch (steeper on a phone)."""
    axes.set_xticks(range(len(names)), names, rotation=45 if narrow else 30, ha="right",
                    rotation_mode="anchor", fontsize=9 if narrow else 10)


def _metric_strip(summary: dict[str, Any], records: list[dict[str, Any]], narrow: bool = False) -> plt.Figure:
    """No horizontal jitter on purpose: bitwise-identical runs must look like one point."""
    metric, scale = _metric_scale(summary)
    rows = summary["conditions"]
    width = NARROW_WIDTH if narrow else max(6, 0.9 * len(rows))
    figure, axes = _figure(narrow, width, 4.6, 4.8)
    # Where the conditions stand closer than a label is wide, the labels stand upright.
    label_width = max([len(f"{row['unique_weight_hashes']}/{row['n_ok']}") for row in rows] + [1]) * 0.6 * 8
    upright = label_width > 0.8 * width * 72 / max(1, len(rows))
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
                          xytext=(0, 6), ha="center", va="bottom", rotation=90 if upright else 0, fontsize=8,
                          color="#444444")
    _condition_ticks(axes, [row["name"] for row in rows], narrow)
    axes.set_ylabel(_label(summary))
    axes.set_title(_wrap(f"{summary['benchmark']}: {summary['repeats']} repeats per condition "
                         "(label: unique weight hashes / ok runs)", width * 0.9, 10), fontsize=10)
    on = axes.scatter([], [], color=DETERMINISTIC, label="op determinism on")
    off = axes.scatter([], [], color=NONDETERMINISTIC, label="op determinism off")
    # Under the plot, not over it: no point or label hides behind the legend.
    figure.legend(handles=[on, off], loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    axes.grid(axis="y", alpha=0.3)
    return figure


def _decimals(values: list[float]) -> int:
    """Decimals that give the largest value three significant digits; every label of a plot gets as many,
    so 0 shows as 0.00 beside 7.40, not as 0 beside 7.4."""
    largest = max([abs(v) for v in values if v is not None and math.isfinite(v)] + [0.0])
    if not largest:
        return 2
    return min(6, max(0, 2 - math.floor(math.log10(largest))))


def _bar_label(axes: Any, text: str, end: float, y: float) -> None:
    """A bar's value, right of the bar and its interval, on the bar's line (_fit_annotations keeps it inside
    the frame)."""
    axes.annotate(text, (end, y), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)


def _sd_bars(summary: dict[str, Any], narrow: bool = False) -> plt.Figure:
    metric, scale = _metric_scale(summary)
    rows = [row for row in summary["conditions"] if row[metric]]
    width = NARROW_WIDTH if narrow else 7
    figure, axes = _figure(narrow, width, 0.45 * len(rows) + 1.6)
    decimals = _decimals([row[metric]["sd"] * scale for row in rows])
    # The floor the summary's sentence gives: `all`'s accuracy's (else the first row's with one).
    floors = [row["noise_floor"] for row in sorted(rows, key=lambda row: row["name"] != conditions.ALL)
              if row["noise_floor"]]
    right = max([1e-12] + [(row[metric]["sd_ci95"] or [0, row[metric]["sd"]])[1] * scale for row in rows]) * 1.25
    label = f"SD of {_label(summary)} with its 95% chi-square interval"
    line = None  # where the dashed floor is drawn
    if floors:
        # The floor is drawn only where it leaves the bars readable; far beyond them the axis label gives it,
        # so a large floor does not squash every bar into the left margin.
        floor = floors[0] * scale
        if floor <= right * 2:
            right = max(right, floor * 1.1)
            line = floor
            axes.axvline(floor, color="#777777", linestyle="--", linewidth=1)
            label += f"; dashed: the test-set noise floor sqrt(p(1-p)/n) = {floor:.3g}"
        else:
            label += f"; the test-set noise floor sqrt(p(1-p)/n) = {floor:.3g} lies off this scale \u2192"
    for y, row in enumerate(rows):
        described = row[metric]
        sd, interval = described["sd"] * scale, described["sd_ci95"]
        axes.barh(y, sd, color=_bar_color(row), alpha=0.8)
        if interval:
            axes.errorbar(sd, y, xerr=[[sd - interval[0] * scale], [interval[1] * scale - sd]], fmt="none",
                          ecolor="#333333", capsize=3)
        share = f"  {row['sd_share_of_all']:.0%} of all" if row["sd_share_of_all"] is not None else ""
        end = interval[1] * scale if interval else sd
        # A bar (and interval) ending short of the dashed floor has its label right of the line, never across it.
        _bar_label(axes, f"{sd:.{decimals}f}{share}", max(end, line) if line is not None else end, y)
    axes.set_xlim(0, right)
    axes.set_yticks(range(len(rows)), [row["name"] for row in rows])
    axes.invert_yaxis()
    axes.set_xlabel(_wrap(label, width * 0.85, 10))
    axes.grid(axis="x", alpha=0.3)
    return figure


def _bar_color(row: dict[str, Any]) -> str:
    """`all` in orange; other conditions blue with op determinism on, red with it off."""
    if row["name"] == conditions.ALL:
        return ALL
    return DETERMINISTIC if row["determinism"] else NONDETERMINISTIC


def _churn_bars(summary: dict[str, Any], narrow: bool = False) -> plt.Figure | None:
    rows = [row for row in summary["conditions"] if row["mean_pairwise_disagreement"] is not None]
    if not rows:
        return None
    width = NARROW_WIDTH if narrow else 7
    figure, axes = _figure(narrow, width, 0.45 * len(rows) + 1.6)
    for y, row in enumerate(rows):
        churn, interval = row["mean_pairwise_disagreement"] * 100, row.get("disagreement_ci95")
        axes.barh(y, churn, color=_bar_color(row), alpha=0.8)
        if interval:
            axes.errorbar(churn, y, xerr=[[churn - interval[0] * 100], [interval[1] * 100 - churn]], fmt="none",
                          ecolor="#333333", capsize=3)
        _bar_label(axes, f"{churn:.2f}%", interval[1] * 100 if interval else churn, y)
    axes.set_yticks(range(len(rows)), [row["name"] for row in rows])
    axes.invert_yaxis()
    axes.set_xlabel(_wrap("churn: % of test examples two runs predict differently (mean over pairs), with its 95% "
                          "interval over runs and examples", width * 0.85, 10))
    axes.set_xlim(left=0)
    axes.grid(axis="x", alpha=0.3)
    return figure


def _unstable_examples(summary: dict[str, Any], records: list[dict[str, Any]], narrow: bool = False):
    """The most unstable test examples of the condition that changes the most of them, as the data shows
    them (images, or curves for 1-D data); None when no run changed a prediction or the data cannot be
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
    columns = min(2 if narrow else 4, len(shown))
    lines = math.ceil(len(shown) / columns)
    figure, panels = _figure(narrow, 2.0 * columns, 2.5 * lines, 2.4 * lines, nrows=lines, ncols=columns,
                             squeeze=False)
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
                        f"{example['runs_off_majority']}/{unstable['runs']} runs off", fontsize=8)
    caption = (f"The test examples `{row['name']}` changes most: {unstable['changed_examples']} of "
               f"{dataset.test_y.shape[0]} examples get another prediction in at least one of its "
               f"{unstable['runs']} runs")
    return caption, figure


def failure_rows(records: list[dict[str, Any]]) -> list[tuple[str, int, str, str]]:
    """(condition, repeat, status code, message) of every failed trial, in the study's order."""
    return [(r["condition"], r["repeat"], r["status"]["code"], r["status"].get("message") or "")
            for r in sorted(records, key=lambda r: (r["condition"], r["repeat"])) if r["status"]["code"] != "ok"]


def _step_times(summary: dict[str, Any], narrow: bool = False) -> plt.Figure:
    rows = [row for row in summary["conditions"] if row["step_ms"]]
    width = NARROW_WIDTH if narrow else max(6, 0.9 * len(rows))
    figure, axes = _figure(narrow, width, 4.2, 4.6)
    for x, row in enumerate(rows):
        color = DETERMINISTIC if row["determinism"] else NONDETERMINISTIC
        axes.boxplot([row["step_ms"]], positions=[x], widths=0.5, showfliers=False, medianprops={"color": color})
        axes.scatter([x] * len(row["step_ms"]), row["step_ms"], s=14, color=color, alpha=0.5, zorder=3)
    _condition_ticks(axes, [row["name"] for row in rows], narrow)
    axes.set_ylabel(_wrap("median steady-state step time per trial (ms)", 3.0 if narrow else 4.0, 10))
    kernels = next((row for row in rows if row["name"] == conditions.KERNELS), None)
    title = "blue: op determinism on, red: off"
    cost = summary.get("determinism_cost") or {}
    if cost.get("ratio") and cost.get("ci95"):
        title += f"; op determinism on/off = {cost['ratio']:.2f}x [{cost['ci95'][0]:.2f}, {cost['ci95'][1]:.2f}] " \
                 f"(interleaved)"
    elif kernels and kernels["step_time_ratio_vs_control"]:
        title += f"; kernels/control ~{kernels['step_time_ratio_vs_control']['ratio']:.2f}x (timed apart)"
    axes.set_title(_wrap(title, width * 0.9, 10), fontsize=10)
    axes.set_ylim(bottom=0)
    axes.grid(axis="y", alpha=0.3)
    return figure


def _loss_curves(summary: dict[str, Any], records: list[dict[str, Any]], narrow: bool = False) -> plt.Figure:
    rows = summary["conditions"]
    columns = min(2 if narrow else 4, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure, grid = _figure(narrow, 3.2 * columns, 2.4 * lines, 2.0 * lines + 0.4, nrows=lines, ncols=columns,
                           sharex=True, sharey=True, squeeze=False)
    for axes, row in zip(grid.flat, rows, strict=False):
        color = DETERMINISTIC if row["determinism"] else NONDETERMINISTIC
        for record in records:
            curve = record["metrics"].get("epoch_train_loss") if record["condition"] == row["name"] else None
            if curve:
                axes.plot(range(1, len(curve) + 1), curve, color=color, alpha=0.35, linewidth=1)
        axes.set_title(row["name"], fontsize=9)
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))  # epochs are whole numbers
        axes.tick_params(labelsize=8 if narrow else 10)
    for axes in grid.flat[len(rows):]:
        axes.set_visible(False)
    figure.supxlabel("epoch")
    figure.supylabel("mean train loss")
    return figure


# The optimizer as its user knows it: the built-in models' records name TF's fused kernel their Adam runs on.
_OPTIMIZER_NAMES = {"ResourceApplyAdam": "Adam"}


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
    name = _OPTIMIZER_NAMES.get(optimizer.get("class"), optimizer.get("class"))
    rows = [
        ("model", model.get("spec") + (f" ({args})" if args else "")),
        ("model source sha256", model.get("source_sha256") or "the harness's built-in model"),
        ("model layers", f"{layers}; {_parameters_in_words(model)}"),
        ("optimizer, loss, task", f"{name} (learning rate {rate}), "
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
    headers = ["component", "A", "B", "B / A", "95% CI", "units x blocks", "steps per block"]
    rows = []
    for name, component in (cost.get("components") or {}).items():
        if component["measured"] and component["ratio"]:
            ci = component["ci95"]
            rows.append([COMPONENT_NAMES.get(name, name), component["a"], component["b"], f"{component['ratio']:.3f}x",
                         f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "one unit: one sample",
                         f"{component.get('units') or 1} x {component.get('blocks_per_unit') or component['blocks']}",
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


def _inline(text: Any) -> str:
    """Text for the page: escaped, its `code` spans set as <code> (the summary's sentences are Markdown)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text)))


def _plain(text: str) -> str:
    """Text with its Markdown code marks dropped, for places that show no markup (alt text, the title)."""
    return text.replace("`", "")


def _table_html(head: list[str], body: list[list[Any]], css_class: str = "", head_column: bool = False,
                camel_breaks: bool = False) -> str:
    """A table in its own box that scrolls sideways when the table is wider than the screen (the page never
    does); its first column stays in view while the rest scrolls. camel_breaks: the first column's names
    (TF op names) may break between their words, LogSoftmax as Log|Softmax."""
    first = "th" if head_column else "td"
    header = "<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>\n" if head else ""

    def name(value: Any) -> str:
        return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "<wbr>", _inline(value)) if camel_breaks else _inline(value)

    rows = "\n".join(f"<tr><{first}>{name(row[0])}</{first}>" + "".join(_cell_html(value) for value in row[1:])
                     + "</tr>" for row in body)
    opening = f'<table class="{css_class}">' if css_class else "<table>"
    return f'<div class="scroll">\n{opening}\n{header}{rows}\n</table>\n</div>'


# A number, a ratio or an interval ("1.127x", "[1.080, 1.176]", "3/3"): kept on one line.
_NUMBER = re.compile(r"[-+~\[]?\d[\d.,:%x/ \[\]+-]*")


# A value and its interval or note ("57.22 [57.01, 57.43]", "0.200 (one sample)"): two unbreakable parts that
# may stack, so the conditions table fits a laptop's width with every interval beside its number.
_WITH_INTERVAL = re.compile(r"(\S+) (\[[^\]]*\]|\([^)]*\))")


def _cell_html(value: Any) -> str:
    text = str(value)
    pair = _WITH_INTERVAL.fullmatch(text)
    if pair:
        return (f'<td class="num pair"><span>{_inline(pair.group(1))}</span> '
                f'<span>{_inline(pair.group(2))}</span></td>')
    return f'<td class="num">{_inline(text)}</td>' if _NUMBER.fullmatch(text) else f"<td>{_inline(text)}</td>"


def _cost_html(summary: dict[str, Any]) -> str:
    headers, rows, op_headers, op_rows, note = cost_tables(summary)
    if not rows:
        return "<p>Not measured: the study has no control and kernels (or ran with --cost_blocks=0).</p>"
    method = _inline((summary.get("determinism_cost") or {}).get("method", ""))
    ops = _table_html(op_headers, op_rows, "ops", camel_breaks=True) if op_rows else \
        f"<p>{_inline(note[0].upper() + note[1:])}.</p>" if note else ""
    return f"{_table_html(headers, rows, 'cost')}\n<p>Method: {method}.</p>\n<h3>Ops that pay</h3>\n{ops}"


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
    # Each plot as drawn for phones on narrow screens, as drawn for wide ones elsewhere.
    figures = "\n".join(f'<figure><picture><source media="{NARROW_SCREEN}" srcset="{narrow_name(name)}">'
                        f'<img src="{name}" alt="{esc(_plain(caption))}"></picture>'
                        f"<figcaption>{_inline(caption)}</figcaption></figure>" for name, caption in captions)
    findings = "\n".join(f"<li>{_inline(line)}</li>" for line in answer(summary))
    verdict = "\n".join(f"<li>{_inline(line)}</li>" for line in verdict_lines(summary))
    headers, rows = condition_table(summary)
    failed = "<p>Every trial finished.</p>" if not failures else _table_html(
        ["condition", "repeat", "status", "why"], [list(failure) for failure in failures])
    title = esc(_plain(f"{summary['benchmark']}: why does the accuracy vary?"))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
html {{ -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }}
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222;
        line-height: 1.4; overflow-wrap: break-word; }}
code {{ font-family: ui-monospace, monospace; font-size: 0.92em; background: #f2f2f2; padding: 0 0.2em;
        border-radius: 3px; }}
figure {{ margin: 1.5em 0; }} figcaption {{ color: #555; font-size: 0.9em; }}
/* A plot never wider than the page; on a phone the narrow drawing, whose labels stay readable. */
figure img {{ display: block; max-width: 100%; height: auto; }}
/* A table wider than the screen scrolls inside its box; the page itself never scrolls sideways. */
.scroll {{ overflow-x: auto; }}
.scroll-cue {{ display: none; color: #555; font-size: 0.85em; }}
details.legend {{ font-size: 0.85em; margin: 0.5em 0 1em; }} details.legend dt {{ font-weight: 600; }}
details.legend dd {{ margin: 0 0 0.4em 1em; }}
/* The answer in short: the first screen, on a phone too. */
ul.verdict {{ font-size: 1.05em; padding-left: 1.2em; margin: 0.5em 0; }} ul.verdict li {{ margin: 0.25em 0; }}
table {{ border-collapse: collapse; font-size: 0.8em; width: 100%; }}
th, td {{ text-align: left; padding: 0.2em 0.4em; border-bottom: 1px solid #ddd; vertical-align: top; }}
/* Words and numbers stay whole (a table too wide for them scrolls); hashes may break anywhere. */
td.num {{ white-space: nowrap; font-variant-numeric: tabular-nums; }}
table.environment td {{ overflow-wrap: anywhere; }}
/* The first column (what a row is) stays in view while the rest scrolls. */
.scroll tr > :first-child {{ position: sticky; left: 0; z-index: 1; background: #fff; }}
/* A number is never broken across lines; the words of "varies" and of the headers wrap instead. */
table.conditions td {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
/* A number and its interval stay whole each, and stack where the column is narrow. */
table.conditions td.pair {{ white-space: normal; }}
td.pair span {{ white-space: nowrap; display: inline-block; }}
table.conditions td:nth-child(2), table.conditions th {{ white-space: normal; overflow-wrap: normal; }}
@media (max-width: 700px) {{
  body {{ margin: 1em auto; padding: 0 0.75em; }}
  h1 {{ font-size: 1.5em; }}
  table.conditions td:nth-child(2) {{ min-width: 8em; }}
  .scroll tr > :first-child {{ box-shadow: inset -1px 0 #ccc; }}  /* where the scrolled columns pass under */
  .scroll-cue {{ display: block; }}  /* on a phone the conditions' table is wider than the screen */
}}
</style></head><body>
<h1>{title}</h1>
<ul class="verdict">
{verdict}
</ul>
<p>Study {_inline(summary['study_id'])}{_inline(trainer_text(summary))}, {summary['repeats']} repeats per condition,
created {esc(summary['created_at'])}.</p>
<h2>Per condition</h2>
<p class="scroll-cue">The table is wider than the screen: swipe it sideways; the condition stays in view.</p>
{_table_html(headers, rows, "conditions")}
{"".join(f"<p>{_inline(note)}</p>" for note in table_notes(summary))}
<details class="legend"><summary>What the columns mean</summary>
<dl>
{"".join(f"<dt>{esc(column)}</dt><dd>{_inline(meaning)}</dd>" for column, meaning in column_legend(headers))}
</dl></details>
<h2>Findings</h2>
<ul>
{findings}
</ul>
<h2>The price of determinism</h2>
{_cost_html(summary)}
<h2>Failed trials</h2>
{failed}
<h2>Plots</h2>
{figures}
<h2>Environment</h2>
{_table_html([], [list(row) for row in environment], "environment", head_column=True)}
</body></html>
"""


def _markdown(summary: dict[str, Any], captions: list[tuple[str, str]], environment: list[tuple[str, str]],
              failures: list[tuple[str, int, str, str]]) -> str:
    lines = [f"# {summary['benchmark']}: why does the accuracy vary?", "",
             *(f"- {line}" for line in verdict_lines(summary)), "",
             f"Study {summary['study_id']}{trainer_text(summary)}, {summary['repeats']} repeats per condition, "
             f"created {summary['created_at']}."]
    headers, rows = condition_table(summary)
    lines += ["", "## Per condition", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    lines += ["", *table_notes(summary)] if table_notes(summary) else []
    lines += ["", "Columns:", "", *(f"- **{column}**: {meaning}" for column, meaning in column_legend(headers))]
    lines += ["", "## Findings", "", *(f"- {line}" for line in answer(summary))]
    lines += ["", "## The price of determinism", "", *_cost_markdown(summary)]
    lines += ["", "## Failed trials", ""]
    lines += [f"- {c} repeat {r}: {code}: {why}" for c, r, code, why in failures] or ["Every trial finished."]
    lines += ["", "## Plots", ""]
    for name, caption in captions:
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    lines += ["## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in environment]
    return "\n".join(lines) + "\n"
