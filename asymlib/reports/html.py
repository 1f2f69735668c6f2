"""Notebooks that draw their Altair charts with no network: in JupyterLab and as HTML.

Altair's notebook output and nbconvert's templates load Vega, Vega-Lite and Vega-Embed from
a CDN. Here they come inline instead, from the ``vl-convert-python`` package (or from the
folder named by ``ASYMLIB_VEGA_JS``, see ``vega_script``): ``show_vega_inline`` puts them
in a notebook's output, ``export_html`` in the head of an exported page, where widgets show
their static view.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import warnings
from pathlib import Path

import nbformat

#: The environment variable naming a folder with vega.min.js, vega-lite.min.js and
#: vega-embed.min.js (e.g. an ``npm install vega vega-lite vega-embed`` node_modules).
VEGA_JS_ENV = "ASYMLIB_VEGA_JS"
_VEGA_FILES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")


class ReportError(RuntimeError):
    """A report cannot be built: its section folder holds no executed dataset notebook, or
    ``ASYMLIB_VEGA_JS`` lacks a script."""


@functools.lru_cache(maxsize=1)
def vega_script() -> str | None:
    """JavaScript that defines ``vega``, ``vegaLite`` and ``vegaEmbed`` globally, or None.

    From the ``vl-convert-python`` package (its bundle of the versions Altair emits), else
    from the three files under the folder named by ``ASYMLIB_VEGA_JS``.
    """
    try:
        import vl_convert
    except ImportError:
        vl_convert = None
    if vl_convert is not None:
        import altair as alt

        vl_version = "v" + "_".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
        return vl_convert.javascript_bundle(vl_version=vl_version)
    folder = os.environ.get(VEGA_JS_ENV)
    if folder:
        found = {}
        for name in _VEGA_FILES:
            matches = sorted(Path(folder).rglob(name))
            if not matches:
                raise ReportError(f"{VEGA_JS_ENV}={folder} has no {name}")
            found[name] = matches[0].read_text(encoding="utf-8")
        return "\n;\n".join(found[name] for name in _VEGA_FILES)
    return None


def _offline_head() -> str:
    """The inline scripts for the page head, or "" when no vega scripts are at hand."""
    import altair as alt

    script = vega_script()
    if script is None:
        return ""
    # Altair's notebook output loads each library unless VEGA_DEBUG says that version is
    # there; the inline bundle provides exactly the versions it asks for.
    versions = {
        "vega_version": alt.VEGA_VERSION, "vegalite_version": alt.VEGALITE_VERSION,
        "vegaembed_version": alt.VEGAEMBED_VERSION,
    }
    loaded = f"var VEGA_DEBUG = {json.dumps(versions)};"
    # A "</script" inside the code would end the tag early; "<\/" means the same in JS.
    script = script.replace("</script", "<\\/script")
    return f'<script type="text/javascript">\n{script}\n</script>\n<script type="text/javascript">{loaded}</script>'


_VEGA_OUTPUT = "asymlib_vega_scripts"


def show_vega_inline() -> None:
    """Display the vega scripts in the notebook (about 1 MB), so that Altair's outputs
    below them find vega there instead of fetching it from a CDN: the report's charts then
    draw in JupyterLab without network too. The HTML export carries them in its head and
    leaves this output out. Without scripts (``vega_script``), says so."""
    from IPython.display import display

    head = _offline_head()
    if head:
        display({"text/html": head}, raw=True, metadata={_VEGA_OUTPUT: True})
    else:
        print("charts load vega from a CDN (pip install vl-convert-python to embed it)")


# The lab template, without what it would fetch from a CDN: require.js (Altair's output
# would then ask it for vega from the CDN), the widget manager, MathJax and Mermaid.
_OFFLINE_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
{{ resources.offline_head }}
{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _static_outputs(report: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without live widgets, nor the vega scripts ``show_vega_inline`` put in an
    output: a widget output shows its static view (its HTML, else its text); without a
    widget manager the live view could not be drawn anyway."""
    report = copy.deepcopy(report)
    report.metadata.pop("widgets", None)
    for cell in report.cells:
        if "outputs" in cell:
            # The page's head has the vega scripts already.
            cell.outputs = [o for o in cell.outputs if not o.get("metadata", {}).get(_VEGA_OUTPUT)]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if _WIDGET_VIEW in data and len(data) > 1:
                del data[_WIDGET_VIEW]
    return report


def export_html(path: str | os.PathLike, *, output: str | os.PathLike | None = None) -> Path:
    """Export a notebook to HTML that renders its Altair charts with no network.

    Vega, Vega-Lite and Vega-Embed are written into the page (``vega_script``); no script
    is loaded from elsewhere. Widgets show their static view. Without ``vl-convert-python``
    (and ``ASYMLIB_VEGA_JS``) the charts fall back to Altair's CDN loader, with a warning:
    then they render only online. Returns the HTML path (default: beside the notebook).
    """
    import jinja2
    from nbconvert import HTMLExporter

    path = Path(path)
    head = _offline_head()
    if not head:
        warnings.warn(
            "no vega scripts to inline (pip install vl-convert-python, or set "
            f"{VEGA_JS_ENV}): the HTML's charts will load vega from a CDN and need the network",
            stacklevel=2,
        )
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"asymlib_offline.html.j2": _OFFLINE_TEMPLATE})],
        template_file="asymlib_offline.html.j2",
    )
    report = _static_outputs(nbformat.read(path, as_version=4))
    body, _ = exporter.from_notebook_node(report, resources={"offline_head": head})
    output = Path(output) if output is not None else path.with_suffix(".html")
    output.write_text(body, encoding="utf-8")
    return output
