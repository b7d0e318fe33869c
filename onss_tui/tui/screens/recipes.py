"""Recipes mode: the saved recipes with their last run's state; run again, attach, edit, duplicate.

A recipe that fails its check opens in the wizard too, with its problems shown where they are."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from onss_tui.recipe import RecipeError, load_recipe, save_recipe
from onss_tui.vocab import RunStatus

RUNNING: RunStatus = "running"
INTERRUPTED: RunStatus = "interrupted"  # the state says running, but no runner holds the run's lock


class RecipeRead(Message):
    """A recipe file's text, read on a thread for the wizard (or why it could not be read)."""

    def __init__(self, path: Path, text: str | None, problems: list[str]):
        super().__init__()
        self.path, self.text, self.problems = path, text, problems


def run_state(recipe_path: Path) -> tuple[str, Path | None]:
    from onss_tui.pipeline.rundir import RunDir
    from onss_tui.pipeline.runner import run_dir_of

    try:
        run = RunDir(run_dir_of(recipe_path))
    except RecipeError:
        return "invalid recipe", None
    if not run.state_path.is_file():
        return "never run", run.path
    status = run.state().status or "?"
    if run.locked_by():
        status = RUNNING
    elif status == RUNNING:
        status = INTERRUPTED
    return status, run.path


class RecipesScreen(Screen):
    BINDINGS = [("enter", "run", "Run / resume"), ("a", "attach", "Attach"), ("c", "copy", "Duplicate"),
                ("o", "open", "Edit in wizard")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="recipes", cursor_type="row")
        yield Static("", id="detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#recipes", DataTable)
        table.add_columns("recipe", "engine", "last run")
        self.reload()

    def folder(self) -> Path:
        return Path(self.app.workdir) / "recipes"

    def reload(self) -> None:
        table = self.query_one("#recipes", DataTable)
        table.clear()
        covered = set()
        for path in sorted(self.folder().glob("*.yaml")):
            try:
                engine = load_recipe(path).engine
            except RecipeError:
                engine = "-"
            status, run_dir = run_state(path)
            covered.add(run_dir)
            table.add_row(path.stem, engine, status, key=str(path))
        # runs started from recipes kept elsewhere (onss run ~/birds.yaml): their stored recipe.yaml
        for state in sorted((Path(self.app.workdir) / "runs").glob("*/state.json")):
            stored = state.parent / "recipe.yaml"
            if state.parent.resolve() in covered or not stored.is_file():
                continue
            try:
                engine = load_recipe(stored).engine
            except RecipeError:
                continue
            table.add_row(f"runs/{state.parent.name}", engine, run_state(stored)[0], key=str(stored))
        if not table.row_count:
            self.query_one("#detail", Static).update(f"no recipes in {self.folder()} yet: ctrl+n in the wizard")

    def selected(self) -> Path | None:
        table = self.query_one("#recipes", DataTable)
        if not table.row_count:
            return None
        return Path(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_run()  # the table takes enter for itself

    def action_run(self) -> None:
        path = self.selected()
        if path is None:
            return
        try:
            load_recipe(path)
        except RecipeError as exc:
            self.notify(exc.problems[0], severity="error", timeout=10)
            return
        if run_state(path)[0] == RUNNING:
            self.action_attach()
            return
        self.app.start_run(path)

    def action_attach(self) -> None:
        from onss_tui.tui.screens.dashboard import DashboardScreen

        path = self.selected()
        if path is None:
            return
        status, run_dir = run_state(path)
        if run_dir is None or status == "never run":
            self.notify("this recipe has not been run yet (enter runs it)")
            return
        self.app.push_screen(DashboardScreen(run_dir))

    def action_copy(self) -> None:
        path = self.selected()
        if path is None:
            return
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            self.notify(f"{exc.problems[0]} (o opens it in the wizard, to fix it)", severity="error", timeout=10)
            return
        n = 2
        while (self.folder() / f"{recipe.name}-{n}.yaml").exists():
            n += 1
        name = f"{recipe.name}-{n}"
        save_recipe(recipe.model_copy(update={"name": name, "output": None}), self.folder() / f"{name}.yaml")
        self.notify(f"saved {name}.yaml")
        self.reload()

    def action_open(self) -> None:
        """Open the recipe in the wizard (its first step), once unsaved changes of the draft
        there are saved or discarded. The file is read on a thread."""
        path = self.selected()
        if path is None:
            return
        self.app.guard_unsaved(lambda: self.run_worker(lambda: self._read(path), thread=True, group="open"),
                               "open another recipe")

    def _read(self, path: Path) -> None:
        from onss_tui.tui.recipe_edit import read_recipe_text

        try:
            self.post_message(RecipeRead(path, read_recipe_text(path), []))
        except RecipeError as exc:
            self.post_message(RecipeRead(path, None, exc.problems))

    def on_recipe_read(self, message: RecipeRead) -> None:
        from onss_tui.tui.screens.wizard import AudioScreen

        problems = message.problems
        if message.text is not None:
            try:
                self.app.draft.open_text(message.path, message.text)
            except RecipeError as exc:  # not YAML, or no mapping: nothing the wizard can show
                problems = exc.problems
        if problems:
            self.query_one("#detail", Static).update("\n".join(problems) + "\nFix it in an editor, then open it again.")
            self.notify(problems[0], severity="error", timeout=10)
            return
        self.app.autosave()
        self.app.push_screen(AudioScreen())

