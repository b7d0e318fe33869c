"""The wizard's corners step: which instruments sit in the pad's four corners, and their labels."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Label, Static

from onss_tui.pipeline.grid import CORNER_NAMES
from onss_tui.tui.screens.audio import AudioScreen
from onss_tui.tui.screens.step import WizardStep


class CornersScreen(WizardStep):
    """Which instruments sit in which corner of the pad, drawn as the pad, and the labels the
    device shows for each (display name, 8 characters; abbreviation, 2)."""

    FIELDS = ("corners",)
    EARLIER = AudioScreen.FIELDS
    STEP = "the corners step"

    def compose(self) -> ComposeResult:
        yield Header()
        names = ", ".join(sorted(self.draft.found)) or "(none found)"
        yield Static(f"Instruments found: {names}\nNames per corner, comma-separated (the pad as you see it):",
                     markup=False)
        with Grid(id="pad"):
            for corner in CORNER_NAMES:
                box = Input(", ".join(self.draft.corners[corner]), placeholder="instrument, ...", id=corner)
                box.border_title = corner.replace("_", " ")
                yield box
        yield Static("", id="recipe-problems", classes="recipe-problems", markup=False)
        yield Label("Device labels: pick a row, then edit its display name and abbreviation")
        yield DataTable(id="labels", cursor_type="row")
        with Horizontal(id="label-edit"):
            yield Label("display")
            yield Input(id="display", max_length=8, placeholder="8 chars")
            yield Label("abbr")
            yield Input(id="abbr", max_length=2, placeholder="2")
        yield Static("", id="label-hint", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        names = sorted(self.draft.found)
        if not any(self.draft.corners.values()) and len(names) >= 4:  # a start: one instrument a corner
            for corner, name in zip(CORNER_NAMES, names):
                self.query_one(f"#{corner}", Input).value = name
        table = self.query_one("#labels", DataTable)
        table.add_column("instrument", key="name")
        table.add_column("corner", key="corner")
        table.add_column("display", key="display")
        table.add_column("abbr", key="abbr")
        self.fill_labels()
        self.flag_corners()
        self.show_problems()

    def reload(self) -> None:
        for corner, names in self.draft.corners.items():
            box = self.query_one(f"#{corner}", Input)
            if self.typed()[corner] != names:
                with box.prevent(Input.Changed):
                    box.value = ", ".join(names)
        self.fill_labels()

    def placed(self) -> list[tuple[str, str]]:
        """(corner, name) for every name typed in the corner boxes, in device order."""
        out = []
        for corner in CORNER_NAMES:
            raw = self.query_one(f"#{corner}", Input).value
            out += [(corner, n.strip()) for n in raw.split(",") if n.strip()]
        return out

    def typed(self) -> dict[str, list[str]]:
        placed = self.placed()
        return {c: [n for corner, n in placed if corner == c] for c in CORNER_NAMES}

    def label_of(self, name: str) -> tuple[str, str]:
        """The labels the device will show: the user's, else the defaults the recipe derives."""
        label = self.draft.labels.get(name, {})
        return label.get("display") or name.upper()[:8], label.get("abbr") or name.upper()[:2]

    def fill_labels(self) -> None:
        table = self.query_one("#labels", DataTable)
        row = table.cursor_row
        table.clear()
        short = {"top_left": "TL", "top_right": "TR", "bottom_left": "BL", "bottom_right": "BR"}
        for corner, name in self.placed():
            if name not in table.rows:
                table.add_row(name, short[corner], *self.label_of(name), key=name)
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
            self.show_label()

    def selected(self) -> str | None:
        table = self.query_one("#labels", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def show_label(self) -> None:
        name = self.selected()
        label = self.draft.labels.get(name, {}) if name else {}
        display, abbr = self.query_one("#display", Input), self.query_one("#abbr", Input)
        with display.prevent(Input.Changed), abbr.prevent(Input.Changed):
            display.value, abbr.value = label.get("display", ""), label.get("abbr", "")
            if name:
                display.placeholder, abbr.placeholder = self.label_of(name)[0], self.label_of(name)[1]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_label()
        self.flag_labels()

    def corner_problems(self) -> dict[str, list[str]]:
        """Per corner, what is wrong with the names typed in it (unknown, or in another corner)."""
        placed = self.placed()
        names = [n for _, n in placed]
        out: dict[str, list[str]] = {c: [] for c in CORNER_NAMES}
        for corner, name in placed:
            if self.draft.found and name not in self.draft.found:
                out[corner].append(f"{name}: no notes")
            elif names.count(name) > 1:
                out[corner].append(f"{name}: in 2 corners")
        return out

    def flag_corners(self) -> None:
        """Mark each corner box whose names are unknown or sit twice, in its own border."""
        for corner, found in self.corner_problems().items():
            box = self.query_one(f"#{corner}", Input)
            box.border_subtitle = "; ".join(found) if found else None
            box.set_class(bool(found), "-invalid")
        self.flag_labels()

    def abbreviation_clashes(self) -> list[str]:
        """Instruments whose abbreviations are the same, each with a free one to use instead."""
        names = list(dict.fromkeys(n for _, n in self.placed()))
        abbrs = {n: self.label_of(n)[1] for n in names}
        used = set(abbrs.values())
        out = []
        seen: dict[str, str] = {}
        for name in names:
            abbr = abbrs[name]
            if abbr in seen:
                letters = name.upper()
                free = next((letters[0] + c for c in letters[1:] if c.isalnum() and letters[0] + c not in used),
                            None)
                fix = f"; give {name} another, e.g. {free}" if free else f"; give {name} another"
                if free:
                    used.add(free)
                out.append(f"{seen[abbr]} and {name} are both '{abbr}' on the device{fix}")
            else:
                seen[abbr] = name
        return out

    def flag_labels(self) -> None:
        """Below the label fields: how the picked name shows on the device, and abbreviation clashes."""
        lines = []
        name = self.selected()
        if name:
            display = self.label_of(name)[0]
            typed = self.draft.labels.get(name, {}).get("display")
            if not typed and len(name) > 8:
                lines.append(f"{name}: shown as '{display}' on the device (8 characters); type a display name")
        lines += [f"warning: {c}" for c in self.abbreviation_clashes()]
        self.query_one("#label-hint", Static).update("\n".join(lines))

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id in CORNER_NAMES:
            self.fill_labels()
            self.draft.set_corners(self.typed())
            self.flag_corners()
            self.show_problems()
            return
        name = self.selected()
        if name is None or event.input.id not in ("display", "abbr"):
            return
        self.draft.set_label(name, event.input.id, event.value.strip())
        table = self.query_one("#labels", DataTable)
        display, abbr = self.label_of(name)
        table.update_cell(name, "display", display)
        table.update_cell(name, "abbr", abbr)
        self.flag_labels()
        self.show_problems()

    def save(self) -> str | None:
        self.draft.set_corners(self.typed())
        corners = self.draft.corners
        empty = [c for c in CORNER_NAMES if not corners[c]]
        if empty:
            return f"{empty[0].replace('_', ' ')} needs at least one instrument"
        unknown = [n for c in CORNER_NAMES for n in corners[c] if n not in self.draft.found]
        if unknown:
            return f"{unknown[0]}: no notes of it in {self.draft.inputs}"
        placed = [n for c in CORNER_NAMES for n in corners[c]]
        twice = sorted({n for n in placed if placed.count(n) > 1})
        if twice:
            return f"{twice[0]} sits in more than one corner; each instrument may sit in one corner"
        return super().save()
