"""Laying a figure out for a narrow preview: top to bottom, its title, a grid of panels (each
with its title, tick labels, axis labels and, under it, its legend), then its notes, all outside
the axes, the figure as tall as they need. Measured, not guessed: each piece's size is read off
the renderer, so no text is cut off or overlaps, whatever its length."""

from __future__ import annotations

from raysweep.figures.parts import FONT

PAD_IN = 0.1  # around the figure's edge
GAP_IN = 0.12  # between the title, the panels' rows and the notes
COLUMN_GAP_IN = 0.15


def wrap_to(fig, paragraphs: list[str], width_in: float, size: float,
            weight: str = "normal") -> str:
    """Paragraphs wrapped to `width_in` inches as the renderer measures them (all words kept), one
    block of text; "+- 0.61" never starts a line."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(size=size, weight=weight)
    renderer = fig.canvas.get_renderer()
    limit = width_in * fig.dpi
    lines = []
    for paragraph in paragraphs:
        line = ""
        for word in paragraph.replace(" +- ", "\u00a0+-\u00a0").split(" "):
            trial = f"{line} {word}" if line else word
            if line and renderer.get_text_width_height_descent(trial, prop, False)[0] > limit:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return "\n".join(line for line in lines if line)


def title_text(fig, text: str, width_in: float):
    """The figure's title, wrapped to its width (placed by arrange)."""
    size = FONT["figure_title"]
    return fig.text(0, 1, wrap_to(fig, [text], width_in, size, "bold"), ha="left", va="top",
                    fontsize=size, fontweight="bold", gid="figure-title")


def notes_text(fig, notes: list[str], width_in: float, warning: str = ""):
    """The notes under the panels (placed by arrange); a warning first, in red, on its own."""
    texts = []
    size = FONT["note"]
    if warning:
        texts.append(fig.text(0, 0, wrap_to(fig, [warning], width_in, size, "bold"), ha="left",
                              va="top", fontsize=size, color="#b00000", fontweight="bold",
                              gid="no-signal"))
    body = wrap_to(fig, [n for n in notes if n], width_in, size)
    if body:
        texts.append(fig.text(0, 0, body, ha="left", va="top", fontsize=FONT["note"],
                              color="0.15", linespacing=1.3))
    return texts


def panel_legend(ax, handles, labels, ncol: int = 1) -> None:
    """A legend for the panel, to go under it (placed by arrange)."""
    ax.legend(handles, labels, fontsize=FONT["legend"], ncol=ncol, loc="upper left",
              frameon=False, borderaxespad=0.0, handlelength=1.8, columnspacing=1.2)


def _inches(box, dpi: float) -> tuple[float, float, float, float]:
    return box.x0 / dpi, box.y0 / dpi, box.x1 / dpi, box.y1 / dpi


def _decorations(fig, grid) -> dict:
    """Per column the room left and right of its panels and the width of its widest legend, per
    row the room above and below them (inches), per panel the room its tick and axis labels take
    under it (its legend goes just below): measured with the legends hidden, each legend's size
    apart (where it goes is arrange's)."""
    renderer = fig.canvas.get_renderer()
    dpi = fig.dpi
    cols = max(len(row) for row in grid)
    room = {"left": [0.0] * cols, "right": [0.0] * cols, "legend": [0.0] * cols,
            "top": [0.0] * len(grid), "bottom": [0.0] * len(grid), "labels": {}}
    for r, row in enumerate(grid):
        for c, ax in enumerate(row):
            if ax is None:
                continue
            legend = ax.get_legend()
            if legend is not None:
                legend.set_visible(False)
            box = _inches(ax.get_window_extent(renderer), dpi)
            tight = _inches(ax.get_tightbbox(renderer), dpi)
            room["left"][c] = max(room["left"][c], box[0] - tight[0])
            room["right"][c] = max(room["right"][c], tight[2] - box[2])
            room["top"][r] = max(room["top"][r], tight[3] - box[3])
            below = room["labels"][id(ax)] = box[1] - tight[1]
            if legend is not None:
                legend.set_visible(True)
                extent = _inches(legend.get_window_extent(renderer), dpi)
                room["legend"][c] = max(room["legend"][c], extent[2] - extent[0])
                below += GAP_IN / 2 + extent[3] - extent[1]
            room["bottom"][r] = max(room["bottom"][r], below)
    return room


def _panel_width(space: float, room: dict) -> float:
    """The widest panels whose columns fit `space` inches: a column takes its panel with its
    decorations, or its legend (which starts under its left decorations), whichever is wider."""
    columns = list(zip(room["left"], room["right"], room["legend"]))
    low, high = 0.0, space
    for _ in range(40):  # each column's width grows with the panel's: bisect
        middle = (low + high) / 2
        if sum(max(a + middle + b, w) for a, b, w in columns) <= space:
            low = middle
        else:
            high = middle
    return max(low, 0.3 * space / len(columns))  # a legend too wide overflows, the panel stays


def _height(texts, renderer, dpi) -> float:
    return sum(t.get_window_extent(renderer).height / dpi for t in texts) + GAP_IN * max(
        0, len(texts) - 1)


def _place_panels(fig, grid, panel_h: float, room: dict, top: float) -> None:
    """The panels from `top` (inches from the bottom) down, each legend under its panel's
    labels, flush with its column's left edge."""
    width, height = fig.get_figwidth(), fig.get_figheight()
    panel_w = _panel_width(width - 2 * PAD_IN - COLUMN_GAP_IN * (len(room["left"]) - 1), room)
    y = top
    for r, row in enumerate(grid):
        y -= room["top"][r] + panel_h
        x = PAD_IN
        for c, ax in enumerate(row):
            if ax is not None:
                ax.set_position([(x + room["left"][c]) / width, y / height, panel_w / width,
                                 panel_h / height])
                if ax.get_legend() is not None:
                    below = y - room["labels"][id(ax)] - GAP_IN / 2
                    ax.get_legend().set_bbox_to_anchor((x / width, below / height),
                                                       transform=fig.transFigure)
            x += max(room["left"][c] + panel_w + room["right"][c], room["legend"][c])
            x += COLUMN_GAP_IN
        y -= room["bottom"][r] + GAP_IN


def arrange(fig, grid: list[list], panel_h: float, title=None, notes=()) -> None:
    """Place `title` (a Text), the panels of `grid` (rows of Axes, None where empty) each
    panel_h inches tall, and the `notes` (Texts), and make the figure as tall as they need.
    Twice: a panel's width decides its tick labels, which decide the room around it."""
    width = fig.get_figwidth()
    renderer = fig.canvas.get_renderer()
    title_h = _height([title], renderer, fig.dpi) + GAP_IN if title is not None else 0.0
    notes_h = _height(notes, renderer, fig.dpi) + GAP_IN if notes else 0.0
    for _ in range(2):
        room = _decorations(fig, grid)
        rows_h = (sum(room["top"]) + sum(room["bottom"]) + panel_h * len(grid)
                  + GAP_IN * (len(grid) - 1))
        height = 2 * PAD_IN + title_h + rows_h + notes_h
        fig.set_size_inches(width, height)
        _place_panels(fig, grid, panel_h, room, height - PAD_IN - title_h)
    if title is not None:
        title.set_position((PAD_IN / width, 1 - PAD_IN / height))
    y = PAD_IN + _height(notes, renderer, fig.dpi)
    for text in notes:
        text.set_position((PAD_IN / width, y / height))
        y -= text.get_window_extent(renderer).height / fig.dpi + GAP_IN
