"""Notebooks that draw their Altair charts with no network: in JupyterLab and as HTML.

Altair's notebook output and nbconvert's templates load Vega, Vega-Lite and Vega-Embed from
a CDN. Here they come inline instead, from the ``vl-convert-python`` package (or from the
folder named by ``ASYMLIB_VEGA_JS``, see ``vega_script``). Every notebook of the project,
the section notebooks and the reports alike, runs one set-up, ``offline_charts()``: its
output carries the scripts, and the charts after it (``chart_html``) draw from them.
``export_html`` moves the scripts into the head of an exported page, where widgets show
their static view, code is folded into "code" toggles and wide outputs scroll sideways;
``trust_notebook`` signs an executed notebook so that JupyterLab runs the scripts of its
stored outputs.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

if TYPE_CHECKING:
    import altair as alt

#: The environment variable naming a folder with vega.min.js, vega-lite.min.js and
#: vega-embed.min.js (e.g. an ``npm install vega vega-lite vega-embed`` node_modules).
VEGA_JS_ENV = "ASYMLIB_VEGA_JS"
_VEGA_FILES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")


#: The key of a report notebook's metadata that says what it was built from
#: (``stitch.report_fingerprint``), and the name of the meta tag that repeats it in the HTML.
BUILT_FROM = "asymlib"
BUILT_FROM_META = "asymlib-built-from"


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
        "vega_version": alt.VEGA_VERSION,
        "vegalite_version": alt.VEGALITE_VERSION,
        "vegaembed_version": alt.VEGAEMBED_VERSION,
    }
    loaded = f"var VEGA_DEBUG = {json.dumps(versions)};"
    # A "</script" inside the code would end the tag early; "<\/" means the same in JS.
    script = script.replace("</script", "<\\/script")
    return f'<script type="text/javascript">\n{script}\n</script>\n<script type="text/javascript">{loaded}</script>'


#: Metadata key of the output that carries the vega scripts (``offline_charts``).
VEGA_OUTPUT = "asymlib_vega_scripts"
#: The name of our Altair renderer (``offline_charts`` enables it).
RENDERER = "asymlib"
#: How long a chart waits for the vega scripts before it says they are missing.
_WAIT_MS = 30_000


def chart_html(chart: "alt.TopLevelMixin | dict", *, output_div: str | None = None) -> str:
    """The HTML that draws ``chart`` (an Altair chart or its Vega-Lite spec) with the vega
    scripts already on the page, loading nothing from anywhere.

    The chart waits (up to 30 s) for ``vegaEmbed`` to be defined, so it draws whichever
    output a front end renders first: the set-up output of ``offline_charts`` or, in an
    exported page, the head's scripts (``export_html``). Without them it says so in the
    chart's place instead of drawing nothing.
    """
    spec = chart if isinstance(chart, dict) else chart.to_dict()
    output_div = output_div or f"altair-viz-{uuid.uuid4().hex}"
    if vega_script() is None:
        return _cdn_chart_html(spec, output_div=output_div)
    # "</" inside a JSON string would end the script early; "<\/" is the same string.
    spec_json = json.dumps(spec).replace("</", "<\\/")
    missing = (
        "The vega scripts are not on this page: run the notebook's set-up cell "
        "(asymlib.reports.html.offline_charts()), or install vl-convert-python."
    )
    return f"""<div id="{output_div}"></div>
<script type="text/javascript">
(function () {{
  var target = document.currentScript.previousElementSibling;
  var spec = {spec_json};
  function fail(message) {{
    target.innerHTML = '<div class="error" style="color: red"></div>';
    target.firstChild.textContent = message;
  }}
  function draw(waited) {{
    if (typeof window.vegaEmbed !== "function") {{
      if (waited < {_WAIT_MS}) setTimeout(function () {{ draw(waited + 100); }}, 100);
      else fail({json.dumps(missing)});
      return;
    }}
    window.vegaEmbed(target, spec, {{mode: "vega-lite"}}).catch(function (error) {{ fail("Javascript Error: " + error.message); }});
  }}
  draw(0);
}})();
</script>"""


def _cdn_chart_html(spec: dict, *, output_div: str) -> str:
    """Altair's own chart HTML, which loads vega from a CDN unless the page has it."""
    import altair as alt
    from altair.utils.html import spec_to_html

    return spec_to_html(
        spec,
        mode="vega-lite",
        vega_version=alt.VEGA_VERSION,
        vegaembed_version=alt.VEGAEMBED_VERSION,
        vegalite_version=alt.VEGALITE_VERSION,
        output_div=output_div,
        fullhtml=False,
        template="universal",
    )


def _render(spec: dict, **metadata) -> dict[str, str]:
    """Altair's renderer interface: a chart's display bundle (``chart_html``)."""
    return {"text/html": chart_html(spec), "text/plain": "<Altair chart: needs a front end that runs scripts>"}


def offline_charts() -> None:
    """The set-up every notebook of the project runs before it draws a chart.

    Charts then draw with no network, in JupyterLab and in executed or exported copies:
    Altair's charts are shown through ``chart_html`` (renderer ``"asymlib"``), and this
    cell's output carries the vega scripts (about 0.9 MB, once per notebook), which
    ``export_html`` moves into the page's head. Without scripts (``vega_script``) it says so
    and leaves Altair's default renderer, which loads vega from a CDN.
    """
    import altair as alt
    from IPython.display import display

    head = _offline_head()
    if not head:
        print("charts load vega from a CDN and need the network (pip install vl-convert-python to embed it)")
        return
    alt.renderers.register(RENDERER, _render)
    alt.renderers.enable(RENDERER)
    note = (
        f'<p style="font-size: smaller; color: gray">Charts draw with vega {alt.VEGA_VERSION} / '
        f"vega-lite {alt.VEGALITE_VERSION} from this output: no network needed.</p>"
    )
    display(
        {"text/html": head + "\n" + note, "text/plain": "vega scripts for the charts below"},
        raw=True,
        metadata={VEGA_OUTPUT: True},
    )


def trust_notebook(path: str | os.PathLike) -> None:
    """Sign the notebook at ``path`` as ``jupyter trust`` does, for this user's Jupyter.

    JupyterLab strips the scripts from the HTML outputs of an untrusted notebook, so its
    charts would stay blank until the user trusted it; notebooks this project executes are
    signed once written.
    """
    from nbformat.sign import NotebookNotary

    notebook = nbformat.read(path, as_version=4)
    NotebookNotary().sign(notebook)


#: Metadata key of a markdown output that shows code (``replay.show_executed``): the HTML
#: folds it away like a code cell's input.
CODE_OUTPUT = "asymlib_code"

# For a reader of the page: each code cell's input (and each code shown again from a
# dataset's notebook) folded into a <details> element, one click away; an output wider
# than the page (a wide table) scrolls sideways instead of being cut off at the right.
_READER_CSS = """\
<style type="text/css">
details.asymlib-code > summary {
  cursor: pointer;
  color: var(--jp-ui-font-color2, #616161);
  font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 13px);
  padding: 2px 0;
}
.jp-OutputArea-child {
  display: flex;
}
.jp-OutputArea-child > .jp-OutputArea-prompt {
  flex: 0 0 auto;
}
.jp-OutputArea-child > .jp-OutputArea-output {
  display: block;
  flex: 1 1 auto;
  min-width: 0;
  max-width: 100%;
  overflow-x: auto;
}
</style>
"""

# The lab template, without what it would fetch from a CDN: require.js (Altair's output
# would then ask it for vega from the CDN), the widget manager, MathJax and Mermaid; with
# code folded away and wide outputs scrolling (``_READER_CSS``).
_OFFLINE_TEMPLATE = """\
{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
{{ resources.offline_head }}
{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block notebook_css %}
{{ super() }}
{{ resources.reader_css }}
{% endblock notebook_css %}
{% block input_group -%}
<details class="asymlib-code"><summary>code</summary>
{{ super() }}
</details>
{%- endblock input_group %}
{% block data_markdown scoped -%}
{%- if output.metadata.get("asymlib_code") -%}
<details class="asymlib-code"><summary>code</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{%- endblock data_markdown %}
"""

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _static_outputs(report: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without live widgets, nor the vega scripts ``offline_charts`` put in an
    output: a widget output shows its static view (its HTML, else its text); without a
    widget manager the live view could not be drawn anyway."""
    report = copy.deepcopy(report)
    report.metadata.pop("widgets", None)
    for cell in report.cells:
        if "outputs" in cell:
            # The page's head has the vega scripts already.
            cell.outputs = [o for o in cell.outputs if not o.get("metadata", {}).get(VEGA_OUTPUT)]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if _WIDGET_VIEW in data and len(data) > 1:
                del data[_WIDGET_VIEW]
    return report


def export_html(path: str | os.PathLike, *, output: str | os.PathLike | None = None) -> Path:
    """Export a notebook to HTML that renders its Altair charts with no network.

    For a reader: each code cell's input is folded away (a "code" toggle, one click to
    open), and an output wider than the page scrolls sideways.

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
    from ..sections.units import replace_atomically

    report = _static_outputs(nbformat.read(path, as_version=4))
    built_from = report.metadata.get(BUILT_FROM, {}).get("built_from")
    if built_from:  # what the report was built from, for ``html_built_from``
        head = f'<meta name="{BUILT_FROM_META}" content="{built_from}">\n{head}'
    body, _ = exporter.from_notebook_node(report, resources={"offline_head": head, "reader_css": _READER_CSS})
    output = Path(output) if output is not None else path.with_suffix(".html")
    replace_atomically(output, lambda partial: partial.write_text(body, encoding="utf-8"))
    return output


def html_built_from(path: str | os.PathLike) -> str | None:
    """The fingerprint an exported report page records (``export_html``), or None when the
    page is missing, unreadable, records none, or does not end as a page does (``</html>``:
    a truncated page is not a report)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.rstrip().endswith("</html>"):
        return None
    # nbconvert may write the tag's attributes in another order
    tag = re.search(f'<meta\\b[^>]*\\bname="{BUILT_FROM_META}"[^>]*>', text)
    content = re.search(r'\bcontent="([0-9a-f]+)"', tag.group(0)) if tag else None
    return content.group(1) if content else None
