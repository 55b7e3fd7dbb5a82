"""``reports/index.html`` and ``reports/summary.md``: every table, record and figure the notebooks wrote.

For each ``reports/<notebook>/`` it renders the last runs (``stamps.json`` from :mod:`dovlib.reproduce`), the
records of ``metrics.json`` (parameters, metrics, profile, dataset full/subset, device, wall and compute time),
every table listed in ``tables.json`` (paper comparisons, with columns ``paper``/``ours``/``diff``, are marked and
labelled with the profile, dataset, device and wall time they come from) and every figure (PNG embedded as base64, SVG
linked by relative path). The page needs no server and no network. ``python -m dovlib.index`` rebuilds it.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from .data import REPO_ROOT
from .report import _atomic_write, crafted_by_text, reports_dir

__all__ = ["NotebookReport", "PaperItem", "PAPER_ITEMS", "NO_DATA", "collect", "coverage", "records_frame",
           "dataset_label", "context_label", "render_html", "render_markdown", "build_index", "main"]

CONTEXT_KEYS = ("profile", "dataset", "is_subset", "datasets", "perceptual", "device", "device_name", "trained_on",
                "training_precision", "trained_by", "crafted_by", "wall_time", "compute_time")
# datasets: each output's own dataset and subset flag, where a record's outputs differ (notebook 08's two tables)
# wall_time: what the run that wrote it took (a model read back from runs/: its reading); compute_time (written by
# dovlib.report.run_times; older records have none): what the results cost, models (and cached AMUSE settings)
# read back at what computing them took; crafted_by ({method: device}, Table I's): the devices that crafted the
# marks of its surrogate-crafted baselines, which a run may read back from runs/ (dovlib.watermarks.table)
TIME_KEYS = ("wall_time", "compute_time")
# what a table or figure saved without it may take from the newest record: never a time, which is that run's own
# (a table written by an earlier run would show the later run's time)
BORROWED_KEYS = tuple(k for k in CONTEXT_KEYS if k not in TIME_KEYS)
# dataset names that notebooks give outputs computed from no images (09: "none" for its pure combinatorics,
# "simulated" for its simulated extraction, whose record's params say dataset None): no dataset, full or subset
NO_DATA = {"none": "none", "simulated": "none (simulated)"}


@dataclass(frozen=True)
class PaperItem:
    """One table or figure of a seed paper and the notebook output that reproduces it."""

    paper: str
    item: str
    notebook: str
    kind: str  # "table" (a save_table name) or "figure" (a save_fig name)
    name: str


# Every table and figure of both papers, and where it is reproduced. The index lists each as present, stale (only
# failed runs since it was written) or MISSING, so a reader sees at once what a run covered. (AMUSE's figures are
# named by content, not by number.)
PAPER_ITEMS = (
    PaperItem("SSCL-BW", "Table I: BA, WSR, perceptual distance of all methods", "02_watermark_dataset", "table",
              "table1_all_methods_vs_paper"),
    PaperItem("SSCL-BW", "Table I: SSCL-BW row beside the benign model", "02_watermark_dataset", "table",
              "table1_sscl_bw"),
    PaperItem("SSCL-BW", "Table II: Malicious, Ind-M, Ind-W (delta_p, p-value)", "03_verification", "table",
              "table2_verification"),
    PaperItem("SSCL-BW", "Fig. 4: BA and WSR vs eps and vs rate", "04_ablation", "figure", "fig4_ablation"),
    PaperItem("SSCL-BW", "Fig. 5: fine-tuning and pruning removal attacks", "05_removal_attacks", "figure",
              "fig5_removal"),
    PaperItem("SSCL-BW", "Fig. 6: surrogate x suspect transferability", "06_transferability", "figure",
              "fig6_transferability"),
    PaperItem("AMUSE", "Sub-message lengths of Algorithm 2 (n, k, bits)", "09_amuse_subset_attack", "table",
              "sub_message_bits_vs_paper"),
    PaperItem("AMUSE", "Table 1: HiDDeN 30 bits vs AMUSE 16 and 9 bits", "08_amuse_plug_and_play", "table",
              "table1_hidden"),
    PaperItem("AMUSE", "Table 2: DCT-DWT, scales 36/30/20, L 100/200/300", "08_amuse_plug_and_play", "table",
              "table2_dct_dwt"),
    PaperItem("AMUSE", "Figures: bit and word accuracy vs message length, no attack and attacked",
              "07_amuse_message_length", "figure", "accuracy_vs_length"),
    PaperItem("AMUSE", "Figures: accuracy per attack family", "07_amuse_message_length", "figure",
              "accuracy_by_attack_family"),
    PaperItem("AMUSE", "Figures: subset attack, accuracy vs leaked share", "09_amuse_subset_attack", "figure",
              "accuracy_vs_leaked_share"),
    PaperItem("AMUSE", "Flowers table: classifier trained on the watermarked vs clean set", "10_amuse_ml_task",
              "table", "ml_task"),
)


@dataclass
class Table:
    name: str
    caption: str
    df: object  # pandas.DataFrame
    comparison: bool
    context: dict
    file: str
    written: str = ""  # when the table was last saved (ISO time; "" for tables saved before this was recorded)


@dataclass
class NotebookReport:
    """Everything one notebook left in ``reports/<stem>/``."""

    stem: str
    title: str = ""
    records: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)  # (name, png relative path, svg relative path or "", base64 png)
    figure_context_entries: dict = field(default_factory=dict)  # name -> figures.json entry (its run's context)
    runs: list = field(default_factory=list)  # stamps.json entries, newest first

    @property
    def latest(self) -> dict:
        """The newest record (by its ``written`` time; of records written in the same second, the one stored last,
        since records are appended): the context of tables that do not carry their own."""
        return max(enumerate(self.records), key=lambda ir: (ir[1].get("written", ""), ir[0]), default=(0, {}))[1]

    def figure_context(self, name: str) -> dict:
        """What the run that drew figure ``name`` gave ``save_fig`` (its ``figures.json`` entry), or, for a figure
        saved without a profile, the notebook's newest record's context."""
        own = {k: v for k, v in self.figure_context_entries.get(name, {}).items() if k in CONTEXT_KEYS}
        return own if "profile" in own else {k: v for k, v in self.latest.items() if k in BORROWED_KEYS}

    @property
    def status(self) -> str:
        """``failed`` when the latest run of any parameter set failed (one failed sweep job is not hidden by a newer
        job that passed), else the newest run's status; without runs, ``ok`` when there are results."""
        if any(r.get("status") == "failed" for r in self.runs):
            return "failed"
        return self.runs[0]["status"] if self.runs else ("ok" if self.records or self.tables else "no run")

    @property
    def all_failed(self) -> bool:
        """Every parameter set's latest run failed: what is on disk predates them (stale)."""
        return bool(self.runs) and all(r.get("status") == "failed" for r in self.runs)


def _title(stem: str) -> str:
    """The notebook's first markdown heading, from ``notebooks/<stem>.ipynb`` when it is there."""
    path = REPO_ROOT / "notebooks" / f"{stem}.ipynb"
    try:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                src = "".join(cell["source"]).strip().splitlines()
                return src[0].lstrip("# ").strip() if src else stem
    except (OSError, ValueError, KeyError):
        pass
    return stem


def _with_diff(df):
    """Comparison tables get ``diff = ours - paper`` when the notebook left it out."""
    import pandas as pd

    if "diff" not in df.columns:
        ours, paper = pd.to_numeric(df["ours"], errors="coerce"), pd.to_numeric(df["paper"], errors="coerce")
        df = df.copy()
        df.insert(list(df.columns).index("ours") + 1, "diff", ours - paper)
    return df


def collect(reports: str | Path | None = None) -> list[NotebookReport]:
    """Read every ``reports/<notebook>/`` folder (in name order) into a :class:`NotebookReport`."""
    import pandas as pd

    root = Path(reports) if reports is not None else reports_dir()
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []:
        nb = NotebookReport(d.name, _title(d.name))
        if (d / "metrics.json").is_file():
            nb.records = json.loads((d / "metrics.json").read_text()).get("records", [])
        if (d / "stamps.json").is_file():
            nb.runs = sorted(json.loads((d / "stamps.json").read_text()).values(),
                             key=lambda s: s.get("finished", ""), reverse=True)
        manifest = json.loads((d / "tables.json").read_text()) if (d / "tables.json").is_file() else {}
        for name, entry in manifest.items():
            path = d / entry.get("file", f"{name}.csv")
            if not path.is_file():
                continue
            df = pd.read_csv(path)
            comparison = {"paper", "ours"} <= set(df.columns)
            if comparison:
                df = _with_diff(df)
            own = {k: entry[k] for k in CONTEXT_KEYS if k in entry}
            latest = nb.latest  # fills what the table does not say, if it comes from the same profile
            same = own.get("profile", latest.get("profile")) == latest.get("profile")
            context = {**({k: latest[k] for k in BORROWED_KEYS if k in latest} if same else {}), **own}
            for key, details in (("device", ("device_name", "trained_on", "training_precision", "trained_by",
                                             "crafted_by")),
                                 ("dataset", ("is_subset", "datasets"))):  # a table's own: not another run's
                for detail in details:
                    if key in own and detail not in own:
                        context.pop(detail, None)
            nb.tables.append(Table(name, entry.get("caption", ""), df, comparison, context, f"{d.name}/{path.name}",
                                   entry.get("written", "")))
        if (d / "figures.json").is_file():
            nb.figure_context_entries = json.loads((d / "figures.json").read_text())
        for png in sorted(d.glob("*.png")):
            svg = png.with_suffix(".svg")
            nb.figures.append((png.stem, f"{d.name}/{png.name}", f"{d.name}/{svg.name}" if svg.is_file() else "",
                               base64.b64encode(png.read_bytes()).decode("ascii")))
        if nb.records or nb.tables or nb.figures or nb.runs:
            out.append(nb)
    return out


def _cell(v):
    if isinstance(v, (list, dict)):
        s = json.dumps(v, default=str)
        return s if len(s) <= 60 else s[:57] + "..."
    return v


def records_frame(records: list[dict]):
    """One row per record: parameters, then profile/dataset/device/wall and compute time (older records: blank),
    then metrics. An ``eps`` is shown in grey levels (``8/255``, :func:`dovlib.studies.eps_label`), as the notebooks
    write it, not as the float 0.0313725 that 01-03 record."""
    import pandas as pd

    from .studies import eps_label

    rows = []
    for r in records:
        row = {f"{k}": _cell(v) for k, v in r.get("params", {}).items()}
        row.update({k: _cell(r.get(k)) for k in CONTEXT_KEYS
                    if k not in ("device_name", "datasets", "crafted_by") and k in r})  # those: the context line
        row.update({f"{k}": _cell(v) for k, v in r.get("metrics", {}).items() if k not in row})
        if isinstance(row.get("eps"), (int, float)) and not isinstance(row["eps"], bool):
            try:
                row["eps"] = eps_label(row["eps"])
            except ValueError:  # outside [1/255, 1]: not a budget eps_label can name, so shown as stored
                pass
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in df.columns:  # integers stay whole where a record lacks them (pandas would make 50000 the float 5e+04)
        values = [r.get(col) for r in rows]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values if v is not None):
            df[col] = pd.array(values, dtype="Int64")
    return df


def dataset_label(ctx: dict) -> str:
    """``cifar10-subset (subset)``, ``cifar10 (full)``, or ``none`` / ``none (simulated)`` for outputs computed from
    no images (``is_subset`` False there says nothing was cut, not that a full dataset was read). A context whose
    outputs read different datasets (notebook 08's record: Table 1 on HiDDeN's images, Table 2 on scikit-image's
    photos) gives each in ``datasets`` (``{"Table 1": {"dataset": ..., "is_subset": ...}, ...}``), and each is named
    with its own tag: ``cifar10-subset (subset) for Table 1, skimage-photos (full) for Table 2``, not one tag after
    them all."""
    parts = ctx.get("datasets")
    if isinstance(parts, dict) and parts:
        return ", ".join(f"{dataset_label(p if isinstance(p, dict) else {'dataset': p})} for {what}"
                         for what, p in parts.items())
    name = ctx.get("dataset")
    if name in NO_DATA:
        return NO_DATA[name]
    return f"{name}" + {True: " (subset)", False: " (full)"}.get(ctx.get("is_subset"), "")


def context_label(ctx: dict) -> str:
    """``profile smoke · dataset cifar10-subset (subset) · cpu (CPU (2 cores)) · 12.3 s``, with ``models trained on
    cuda in bf16`` when the models a CPU run read back from ``runs/`` were trained elsewhere, and ``marks crafted by
    NVIDIA H100 80GB HBM3 (ubw-c)`` when Table I's crafted marks were (:func:`dovlib.report.crafted_by_text`; also
    where the context does not name its own device, which it then cannot be compared with)."""
    if not ctx:
        return "context not recorded"
    parts = []
    if "profile" in ctx:
        parts.append(f"profile {ctx['profile']}")
    if "dataset" in ctx:
        parts.append(f"dataset {dataset_label(ctx)}")
    if ctx.get("perceptual"):  # the generator's similarity loss: LPIPS or the named fallback
        parts.append(f"perceptual {ctx['perceptual']}")
    if "device" in ctx:
        parts.append(str(ctx["device"]) + (f" ({ctx['device_name']})" if ctx.get("device_name") else ""))
    trained, by = ctx.get("trained_on"), ctx.get("trained_by")
    # models read back from another kind of device, or from another machine of this kind (a CPU with other kernels)
    if (trained and trained != str(ctx.get("device", "")).split(":")[0]) or (
            by and ctx.get("device_name") and by != ctx["device_name"]):
        parts.append(f"models trained on {trained or 'unknown'}" + (f" ({by})" if by else "")
                     + (f" in {ctx['training_precision']}" if ctx.get("training_precision") else ""))
    crafted = ctx.get("crafted_by")
    if isinstance(crafted, dict) and crafted and any(d != ctx.get("device_name") for d in crafted.values()):
        parts.append(crafted_by_text(crafted))
    if isinstance(ctx.get("wall_time"), (int, float)):
        parts.append(f"wall time {ctx['wall_time']:.1f} s")
    if isinstance(ctx.get("compute_time"), (int, float)):  # older records and tables hold none
        parts.append(f"compute time {ctx['compute_time']:.1f} s")
    return " · ".join(parts)


def _is_smoke(profile) -> bool:
    """Whether a profile string is the smoke profile however it is spelled (``" smoke"``, which get_profile accepts,
    or ``"smoke:epochs=2"``): the base name, before ":", of its canonical form."""
    from .params import profile_key

    return str(profile_key(profile) or "").partition(":")[0].strip() == "smoke"


def _overview(notebooks: list[NotebookReport]):
    import pandas as pd

    rows = []
    for nb in notebooks:
        run = nb.runs[0] if nb.runs else {}
        ctx = nb.latest
        rows.append({"notebook": nb.stem, "status": nb.status, "profile": ctx.get("profile", ""),
                     "dataset": dataset_label(ctx) if "dataset" in ctx else "",
                     "device": ctx.get("device", ""), "run time (s)": round(run["wall_time"], 1) if run else None,
                     "records": len(nb.records), "tables": len(nb.tables),
                     "comparisons": sum(t.comparison for t in nb.tables), "figures": len(nb.figures)})
    return pd.DataFrame(rows)


def _is_output(saved: str, name: str) -> bool:
    """Whether a saved table or figure is the output ``name``: under that name, or a sweep job's ``name__<tag>``."""
    return saved == name or saved.startswith(name + "__")


def coverage(notebooks: list[NotebookReport], items=PAPER_ITEMS):
    """One row per paper table/figure: the notebook output that reproduces it, ``present``, ``stale`` (every run of
    the notebook since failed) or ``MISSING``, and the context (profile, dataset, device) it was measured with; for a
    sweep's tagged tables, the newest."""
    import pandas as pd

    by_stem = {nb.stem: nb for nb in notebooks}
    rows = []
    for it in items:
        nb = by_stem.get(it.notebook)
        ctx, found, saved = {}, False, it.name
        if nb is not None and it.kind == "table":  # the newest of a sweep's tagged tables (stable for ties)
            matches = [t for t in nb.tables if _is_output(t.name, it.name)]
            t = max(reversed(matches), key=lambda t: t.written) if matches else None
            found, ctx = t is not None, (t.context if t is not None else {})
            saved = t.name if t is not None else saved
        elif nb is not None:  # the newest of a sweep's tagged figures, with the context its run gave
            names = [f[0] for f in nb.figures if _is_output(f[0], it.name)]
            found = bool(names)
            if found:
                name = max(reversed(names), key=lambda n: nb.figure_context_entries.get(n, {}).get("written", ""))
                ctx = nb.figure_context(name)
        status = "MISSING" if not found else ("stale" if nb.all_failed else "present")  # files of an earlier run
        rows.append({"paper": it.paper, "item": it.item, "notebook": it.notebook, "output": f"{it.kind} {it.name}",
                     "status": status, "measured with": context_label(ctx) if found else "",
                     # a notebook that wrote nothing has no section on the page: no link ("")
                     "anchor": f"{it.notebook}-{saved}" if found and it.kind == "table" else
                     (it.notebook if nb is not None else "")})
    return pd.DataFrame(rows)


def _text(v) -> str:
    """A table cell as index.html and summary.md show it: blank when missing, integers whole, floats to six
    significant digits, so 12345.6 and a p-value of 0.0099996 read as they are (not 1.235e+04, nor 0.01 beside
    alpha 0.01), and 1.2e-05 keeps its exponent."""
    import pandas as pd

    if pd.api.types.is_scalar(v) and pd.isna(v):
        return ""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):  # numpy's bool is no number: printed as it is
        return str(v)
    if isinstance(v, numbers.Integral) or (float(v).is_integer() and abs(v) < 1e15):  # 11173962.0 from a CSV, whole
        return str(int(v))
    return f"{v:.6g}"


def _frame_text(df):
    """``df`` with every cell as :func:`_text` writes it: both pages show the same digits."""
    return df.astype(object).map(_text)


def _html_table(df, classes: str = "", escape: bool = True) -> str:
    return _frame_text(df).to_html(index=False, classes=f"data {classes}".strip(), border=0, escape=escape)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dovlib reports</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 75em; padding: 0 1em; color: #222; }
table.data { border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; display: block; overflow-x: auto;
  max-width: 100%; }
table.data th, table.data td { border-bottom: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
table.data th { background: #f3f3f3; }
.context { color: #555; font-size: 0.9em; }
.badge { display: inline-block; padding: 0 0.5em; border-radius: 0.3em; font-size: 0.8em; background: #e8e8e8; }
.badge.smoke { background: #ffe1a8; } .badge.failed { background: #f6b0b0; } .badge.paper { background: #c9e7c9; }
.error { color: #a00; white-space: pre-wrap; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; } figure img { max-width: 36em; }
nav a { margin-right: 0.8em; }
</style></head>
<body>
<h1>dovlib reports</h1>
<p class="context">Built {{ built }} from <code>{{ root }}</code>. Every number is labelled with the profile, dataset
(full or subset), device and wall time it was measured with. Times: the overview's run time is what the notebook's
last run took; a record's <code>wall_time</code> is what its cells took in the run that wrote it (a model read back
from <code>runs/</code> counts the seconds reading it took) and its <code>compute_time</code> what its results cost,
models, generators, networks and AMUSE settings read back counted at what computing them took, so it is the same
whether the cache was warm or cold (older records have none). <span class="badge smoke">smoke</span> numbers come
from tiny CPU budgets that only check the code runs; they are not results.</p>
<nav>{% for nb in notebooks %}<a href="#{{ nb.stem }}">{{ nb.stem }}</a>{% endfor %}</nav>
<h2>Overview</h2>
{{ overview | safe }}
<h2>Paper coverage</h2>
<p class="context">Every table and figure of both papers and the notebook output that reproduces it.</p>
<table class="data coverage"><thead><tr><th>paper</th><th>item</th><th>notebook output</th><th>status</th>
<th>measured with</th></tr></thead><tbody>
{% for r in coverage %}<tr class="{{ r.status }}"><td>{{ r.paper }}</td><td>{{ r.item }}</td>
<td>{% if r.anchor %}<a href="#{{ r.anchor }}">{{ r.notebook }}</a>{% else %}{{ r.notebook }}{% endif %}
{{- " · " ~ r.output }}</td>
<td>{{ r.status }}</td><td>{{ r["measured with"] }}</td></tr>{% endfor %}
</tbody></table>
{% if comparisons %}<h2>Comparisons with the papers</h2>
<ul>{% for nb, t in comparisons %}<li><a href="#{{ nb.stem }}-{{ t.name }}">{{ nb.stem }} · {{ t.name }}</a>
<span class="context">({{ label(t.context) }})</span></li>{% endfor %}</ul>{% endif %}
{% for nb in notebooks %}
<section class="notebook" id="{{ nb.stem }}">
<h2>{{ nb.title }}{% if nb.title != nb.stem %} <code>{{ nb.stem }}</code>{% endif %}
 <span class="badge {{ nb.status }}">{{ nb.status }}</span>
{% if smoke(nb.latest.get("profile")) %} <span class="badge smoke">smoke</span>{% endif %}</h2>
{% if nb.runs %}<h3>Runs</h3>{{ runs[nb.stem] | safe }}
{% for r in nb.runs if r.error %}<p class="error">{{ r.notebook }} {{ r.parameters }}: {{ r.error }}</p>{% endfor %}
{% endif %}
{% if nb.tables %}<h3>Tables</h3>{% endif %}
{% for t in nb.tables %}
<div class="table{% if t.comparison %} comparison{% endif %}" id="{{ nb.stem }}-{{ t.name }}">
<h4>{{ t.name }}{% if t.comparison %} <span class="badge paper">paper / ours / diff</span>{% endif %}
{% if smoke(t.context.get("profile")) %} <span class="badge smoke">smoke</span>{% endif %}</h4>
{% if t.caption %}<p>{{ t.caption }}</p>{% endif %}
<p class="context">{{ label(t.context) }} · <a href="{{ t.file }}">{{ t.file }}</a></p>
{{ tables[nb.stem ~ "/" ~ t.name] | safe }}
</div>
{% endfor %}
{% if nb.records %}<h3>Records (<code>metrics.json</code>)</h3>{{ records[nb.stem] | safe }}{% endif %}
{% if nb.figures %}<h3>Figures</h3>{% endif %}
{% for name, png, svg, b64 in nb.figures %}<figure><img src="data:image/png;base64,{{ b64 }}" alt="{{ name }}">
{% set fctx = nb.figure_context(name) %}<figcaption>{{ name }}
{%- if smoke(fctx.get("profile")) %} <span class="badge smoke">smoke</span>{% endif %}
({% if svg %}<a href="{{ svg }}">SVG</a>, {% endif %}<a href="{{ png }}">PNG</a>)
<span class="context">{{ label(fctx) }}</span></figcaption>
</figure>{% endfor %}
</section>
{% endfor %}
{% if not notebooks %}<p>No notebook has written anything yet: run <code>make reproduce</code>.</p>{% endif %}
<script>/* count images that decoded (read by the headless-browser test; harmless otherwise) */
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-images-total", imgs.length);
  document.body.setAttribute("data-images-loaded",
    imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});</script>
</body></html>
"""


def _runs_frame(nb: NotebookReport):
    import pandas as pd

    return pd.DataFrame([{"parameters": json.dumps(r.get("parameters", {})), "status": r.get("status"),
                          "run time (s)": round(r.get("wall_time", 0.0), 1), "finished": r.get("finished", ""),
                          "executed notebook": r.get("output", "")} for r in nb.runs])


def _runs_html(nb: NotebookReport) -> str:
    """The runs table, each executed notebook a relative link (its path under reports/, as ``stamps.json`` has it)."""
    import html
    from urllib.parse import quote

    df = _runs_frame(nb)
    for col in ("parameters", "status", "finished"):
        df[col] = df[col].map(lambda v: html.escape(str(v)) if v is not None else "")
    df["executed notebook"] = [f'<a href="{html.escape(quote(o), quote=True)}">{html.escape(o.rsplit("/", 1)[-1])}</a>'
                               if o else "" for o in df["executed notebook"]]
    return _html_table(df, escape=False)  # the other columns are escaped above


def render_html(notebooks: list[NotebookReport], root: str | Path = "reports") -> str:
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        built=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), root=str(root),
        notebooks=notebooks, overview=_html_table(_overview(notebooks)) if notebooks else "",
        coverage=coverage(notebooks).to_dict("records"),
        comparisons=[(nb, t) for nb in notebooks for t in nb.tables if t.comparison], label=context_label,
        smoke=_is_smoke,
        runs={nb.stem: _runs_html(nb) for nb in notebooks if nb.runs},
        tables={f"{nb.stem}/{t.name}": _html_table(t.df, "comparison" if t.comparison else "")
                for nb in notebooks for t in nb.tables},
        records={nb.stem: _html_table(records_frame(nb.records)) for nb in notebooks if nb.records})


def _md_cell(text) -> str:
    # a "|" would open another column and a newline end the row
    return str(text).replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def _md_table(df) -> str:
    # the cells as the HTML page shows them (missing values blank, where tabulate would print "nan"); numbers are
    # not parsed again, which would round them to its own format
    from pandas.api.types import is_numeric_dtype

    cells = _frame_text(df).map(_md_cell).rename(columns=_md_cell)
    return cells.to_markdown(index=False, disable_numparse=True,
                             colalign=["right" if is_numeric_dtype(df[c]) else "left" for c in df.columns])


def _md_fenced(text: str) -> list[str]:
    """``text`` verbatim in a fenced block, its fence longer than any run of backticks in it."""
    import re

    fence = "`" * max(3, 1 + max((len(m) for m in re.findall("`+", text)), default=0))
    return [fence, text, fence]


def render_markdown(notebooks: list[NotebookReport]) -> str:
    """The same content as the HTML page in Markdown (figures as relative links)."""
    md = _md_table
    lines = ["# dovlib reports", "",
             "Every number is labelled with its profile, dataset (full or subset), device and wall time. Times: the "
             "overview's run time is what the notebook's last run took; a record's `wall_time` is what its cells "
             "took in the run that wrote it (a model read back from `runs/` counts the seconds reading it took) and "
             "its `compute_time` what its results cost, models, generators, networks and AMUSE settings read back "
             "counted at what computing them took, so it is the same whether the cache was warm or cold (older "
             "records have none). `smoke` numbers come from tiny CPU budgets that only check the code runs; they are "
             "not results.", ""]
    if notebooks:
        lines += ["## Overview", "", md(_overview(notebooks)), ""]
    lines += ["## Paper coverage", "", md(coverage(notebooks).drop(columns="anchor")), ""]
    for nb in notebooks:
        lines += [f"## {nb.stem}" + (f": {nb.title}" if nb.title != nb.stem else ""), ""]
        for r in nb.runs:
            if r.get("error"):
                # a traceback has several lines and may quote code: inline code would break on either
                lines += [f"**failed** {r.get('parameters')}:", "", *_md_fenced(str(r["error"])), ""]
        for t in nb.tables:
            tag = " (paper / ours / diff)" if t.comparison else ""
            lines += [f"### {t.name}{tag}", "", *([t.caption, ""] if t.caption else []),
                      f"*{context_label(t.context)}*", "", md(t.df), ""]
        if nb.records:
            lines += ["### Records", "", md(records_frame(nb.records)), ""]
        for name, png, svg, _ in nb.figures:
            lines += [f"![{name}]({png})", "", f"*{name}: {context_label(nb.figure_context(name))}*", ""]
    return "\n".join(lines)


def build_index(reports: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``reports/index.html`` and ``reports/summary.md``; return their paths."""
    root = Path(reports) if reports is not None else reports_dir()
    root.mkdir(parents=True, exist_ok=True)
    notebooks = collect(root)
    html, md = root / "index.html", root / "summary.md"
    _atomic_write(html, render_html(notebooks, root))
    _atomic_write(md, render_markdown(notebooks))
    return html, md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dovlib.index", description=__doc__.splitlines()[0])
    parser.add_argument("--reports", default=None, help="reports folder (default $DOVLIB_REPORTS or reports/)")
    html, md = build_index(parser.parse_args(argv).reports)
    print(f"wrote {html} and {md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
