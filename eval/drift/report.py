"""The drift report: one self-contained ``report.html`` (plots inline as SVG, no external asset)
and ``drift.json`` (the comparison's result, as ``--json`` prints it).

Invariants: every string from the index or the query set (query text, document names, source ids)
is HTML-escaped; the files are written to temporary names and renamed, so a report folder never
holds half a report.
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path
from typing import Any

REPORT = "report.html"
DRIFT_JSON = "drift.json"
SOURCES_SHOWN = 12


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG


def _plots(result: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_query"]
    plots: dict[str, str] = {}

    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    bins = [i / 20 for i in range(21)]
    ax.hist([r["rbo"] for r in rows], bins=bins, alpha=0.7, label="RBO (p=0.9)")
    ax.hist([r["jaccard"] for r in rows], bins=bins, alpha=0.5, label=f"Jaccard@{result['top_k']}")
    ax.set_xlabel("per-query overlap, baseline vs candidate (1 = unchanged)")
    ax.set_ylabel("queries")
    ax.legend(loc="upper left")
    plots["overlap"] = _svg(fig)

    if "ndcg@10" in result:
        judged = [r for r in rows if "ndcg_baseline" in r]
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        ax.scatter(
            [r["ndcg_baseline"] for r in judged],
            [r["ndcg_candidate"] for r in judged],
            s=12,
            alpha=0.6,
        )
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("nDCG@10, baseline")
        ax.set_ylabel("nDCG@10, candidate")
        plots["ndcg"] = _svg(fig)

    sources = result["sources"][:SOURCES_SHOWN]
    if sources:
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(sources) + 1.0))
        ys = list(range(len(sources)))[::-1]
        ax.barh([y + 0.2 for y in ys], [s["before"] for s in sources], height=0.4, label="before")
        ax.barh([y - 0.2 for y in ys], [s["after"] for s in sources], height=0.4, label="after")
        ax.set_yticks(ys, [s["source"] for s in sources])
        ax.set_xlabel(f"share of queries with the source in their top {result['top_k']}")
        ax.set_xlim(0, 1)
        ax.legend(loc="lower right")
        plots["sources"] = _svg(fig)
    return plots


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "–" if value is None else str(value)


def render_html(result: dict[str, Any]) -> str:
    plots = _plots(result)
    verdict = result["verdict"]
    b, c = result["baseline"], result["candidate"]
    summary_rows = [
        ["queries", result["queries"]],
        [f"mean RBO (top {result['top_k']} documents)", _fmt(result["rbo"]["mean"])],
        ["share of queries with RBO < 0.5", _fmt(result["rbo"]["share_below_0.5"])],
        [f"mean Jaccard@{result['top_k']} (documents)", _fmt(result["jaccard@k"]["mean"])],
        [f"mean Jaccard@{result['top_k']} (chunks)", _fmt(result["jaccard@k_chunks"]["mean"])],
        ["top document changed", _fmt(result["top1_changed"])],
    ]
    if "ndcg@10" in result:
        q = result["ndcg@10"]
        summary_rows += [
            ["nDCG@10 baseline → candidate", f"{q['baseline']:.4f} → {q['candidate']:.4f}"],
            [
                "nDCG@10 change (95 % CI, p)",
                f"{q['delta']:+.4f} [{q['ci95'][0]:+.4f}, {q['ci95'][1]:+.4f}], "
                f"p = {q['p_value']:.4f}",
            ],
        ]
    scores = result["scores"]
    summary_rows += [
        [
            "share of top-k hits flagged",
            f"{scores['flagged_share']['baseline']:.4f} → {scores['flagged_share']['candidate']:.4f}",
        ],
        [
            "mean trust of top-k hits",
            f"{scores['mean_trust']['baseline']:.4f} → {scores['mean_trust']['candidate']:.4f}",
        ],
    ]
    for name in ("fused", "dense", "sparse"):
        if name in scores and scores[name]["ks"]["statistic"] is not None:
            k = scores[name]["ks"]
            summary_rows.append(
                [f"{name} scores, KS statistic (p)", f"{k['statistic']:.4f} ({k['p_value']:.3g})"]
            )
    emb = result["embedding"]
    emb_rows = [
        [
            k,
            ", ".join(f"{kk} {_fmt(vv)}" for kk, vv in v.items())
            if isinstance(v, dict)
            else _fmt(v),
        ]
        for k, v in emb.items()
        if k != "why"
    ]
    emb_html = (
        f"<p>{_e(emb['why'])}</p>" if emb.get("why") else _table(["measure", "value"], emb_rows)
    )
    gate_rows = [
        [
            name,
            _fmt(g.get("threshold")),
            _fmt(g.get("value")),
            "pass" if g["passed"] else "FAIL",
            g.get("source") or g.get("why") or "",
        ]
        for name, g in result["gates"].items()
    ]
    changed_rows = [
        [
            q["text"],
            _fmt(q["rbo"]),
            "; ".join(f"{d['doc']} ({d['source']})" for d in q["before"]),
            "; ".join(f"{d['doc']} ({d['source']})" for d in q["after"]),
        ]
        for q in result["most_changed"]
    ]
    source_rows = [
        [s["source"], _fmt(s["before"]), _fmt(s["after"]), f"{s['delta']:+.4f}", s["new"]]
        for s in result["sources"]
    ]
    figures = "".join(
        f'<figure class="plot" id="plot-{name}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'
        for name, caption, svg in (
            ("overlap", "Per-query overlap of the top-k documents", plots.get("overlap")),
            ("ndcg", "Per-query nDCG@10, baseline vs candidate", plots.get("ndcg")),
            (
                "sources",
                "Source share, before and after (largest gain first)",
                plots.get("sources"),
            ),
        )
        if svg
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Ragwall drift: {_e(b["index_version"])} → {_e(c["index_version"])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2rem;max-width:72rem;color:#222}}
.verdict{{font-size:1.4rem;padding:.6rem 1rem;border-radius:.4rem;display:inline-block}}
.pass{{background:#dff3e3;color:#11632a}} .fail{{background:#fbe0e0;color:#8a1111}}
table{{border-collapse:collapse;margin:.6rem 0 1.4rem}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}}
figure.plot{{display:inline-block;margin:0 1rem 1rem 0}} figure.plot svg{{max-width:100%;height:auto}}
</style></head><body>
<h1>Retrieval drift</h1>
<p id="verdict" class="verdict {_e(verdict)}">verdict: {_e(verdict)}</p>
<p>baseline <b>{_e(b["index_version"])}</b> (taken {_e(b["taken_at"])}, model {_e(b["embedding_model"])})
→ candidate <b>{_e(c["index_version"])}</b> (taken {_e(c["taken_at"])}, model {_e(c["embedding_model"])})</p>
<h2>Gates</h2>
{_table(["gate", "threshold", "measured", "result", "note"], gate_rows) if gate_rows else "<p>No gate was set.</p>"}
<h2>Summary</h2>
{_table(["measure", "value"], summary_rows)}
<h2>Plots</h2>
{figures}
<h2>Most-changed queries</h2>
{_table(["query", "RBO", "top 3 before", "top 3 after"], changed_rows) if changed_rows else "<p>No query's results changed.</p>"}
<h2>Source share</h2>
{_table(["source", "before", "after", "change", "new"], source_rows)}
<h2>Embedding drift</h2>
{emb_html}
</body></html>
"""


def write_report(result: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write ``report.html`` and ``drift.json`` into ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"html": folder / REPORT, "json": folder / DRIFT_JSON}
    for key, text in (("html", render_html(result)), ("json", json.dumps(result, indent=1))):
        tmp = paths[key].with_name(paths[key].name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(paths[key])
    return paths
