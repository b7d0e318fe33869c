"""Recipes mode: the saved recipes and every run this user started (the registry, from any folder),
with their state; run again, attach, edit, duplicate.

The list is read on a thread (recipes, run states, the registry) that only posts it. A recipe that
fails its check opens in the wizard too, with its problems shown where they are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from onss_tui.recipe import RecipeError, load_recipe, save_recipe
from onss_tui.vocab import RunStatus

RUNNING: RunStatus = "running"
NEVER_RUN = "never run"


@dataclass(frozen=True)
class Row:
    label: str  # the recipe's file name (recipes/), or its name (a registered run's)
    engine: str
    status: str
    folder: str  # the run folder, as short as it can be said
    recipe: Path  # what enter runs and o opens: the recipe file, or the run's stored recipe.yaml
    run: Path | None
    slurm: bool = False


class RecipesListed(Message):
    def __init__(self, rows: list[Row]):
        super().__init__()
        self.rows = rows


class RecipeRead(Message):
    """A recipe file's text, read on a thread for the wizard (or why it could not be read)."""

    def __init__(self, path: Path, text: str | None, problems: list[str]):
        super().__init__()
        self.path, self.text, self.problems = path, text, problems


def run_state(recipe_path: Path, slurm: bool = False) -> tuple[str, Path | None]:
    """The status of the run a recipe file makes, and its folder (None: the recipe is invalid)."""
    from onss_tui.pipeline.rundir import RunDir
    from onss_tui.pipeline.runner import run_dir_of

    try:
        run = RunDir(run_dir_of(recipe_path))
    except RecipeError:
        return "invalid recipe", None
    if not run.state_path.is_file():
        return NEVER_RUN, run.path
    return run.status_now(slurm=slurm), run.path


def _short(folder: Path, workdir: Path) -> str:
    for base, shown in ((workdir, ""), (Path.home(), "~/")):
        try:
            return shown + str(folder.relative_to(base))
        except ValueError:
            continue
    return str(folder)


def list_rows(workdir: Path) -> list[Row]:
    """The recipes under ``workdir/recipes``, then every registered run none of them makes (newest
    first): runs started from other folders, found after an SSH reconnect lands in ``$HOME``."""
    from onss_tui import registry

    rows, covered = [], set()
    for path in sorted((workdir / "recipes").glob("*.yaml")):
        try:
            engine = load_recipe(path).engine
        except RecipeError:
            engine = "-"
        status, run_dir = run_state(path)
        if run_dir is not None:
            covered.add(run_dir.resolve())
        rows.append(Row(path.stem, engine, status, _short(run_dir, workdir) if run_dir else "-", path, run_dir))
    for entry in registry.runs():
        run_dir = Path(entry.run)
        if run_dir.resolve() in covered:
            continue
        covered.add(run_dir.resolve())
        kept = Path(entry.recipe) if entry.recipe and Path(entry.recipe).is_file() else run_dir / "recipe.yaml"
        try:
            engine = load_recipe(kept).engine
        except RecipeError:
            engine = "-"
        from onss_tui.pipeline.rundir import RunDir

        status = RunDir(run_dir).status_now(slurm=entry.slurm) + (" (Slurm)" if entry.slurm else "")
        rows.append(Row(entry.name, engine, status, _short(run_dir, workdir), kept, run_dir, entry.slurm))
    from onss_tui.pipeline.rundir import RunDir

    for stored in sorted((workdir / "runs").glob("*/recipe.yaml")):  # (runs of an onss before the registry)
        run_dir = stored.parent
        if run_dir.resolve() in covered:
            continue
        try:
            recipe = load_recipe(stored)
        except RecipeError:
            continue
        rows.append(Row(recipe.name, recipe.engine, RunDir(run_dir).status_now(), _short(run_dir, workdir), stored,
                        run_dir))
    return rows


class RecipesScreen(Screen):
    BINDINGS = [("enter", "run", "Run / resume"), ("a", "attach", "Attach"), ("c", "copy", "Duplicate"),
                Binding("o", "open", "Edit", tooltip="open it in the wizard"), ("r", "reload", "Refresh")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, Row] = {}
        self.listed = 0  # lists shown so far (tests wait for one)

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="recipes", cursor_type="row")
        yield Static("", id="detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#recipes", DataTable)
        table.add_columns("recipe", "engine", "last run", "run folder")
        self.action_reload()
        self.app.refresh_bindings()  # (the app's "^o Recipes" is not offered here)

    def folder(self) -> Path:
        return Path(self.app.workdir) / "recipes"

    def action_reload(self) -> None:
        workdir = Path(self.app.workdir)
        self.run_worker(lambda: self.post_message(RecipesListed(list_rows(workdir))), thread=True,
                        exclusive=True, group="recipes-list")

    def reload(self) -> None:
        self.action_reload()

    def on_recipes_listed(self, message: RecipesListed) -> None:
        table = self.query_one("#recipes", DataTable)
        table.clear()
        self.rows = {}
        for i, row in enumerate(message.rows):
            key = f"{i}:{row.recipe}"
            self.rows[key] = row
            table.add_row(row.label, row.engine, row.status, row.folder, key=key)
        detail = self.query_one("#detail", Static)
        if not table.row_count:
            detail.update(f"no recipes in {self.folder()} and no runs yet: ctrl+n in the wizard makes one")
        else:
            mine = sum(1 for r in message.rows if r.recipe.parent == self.folder())
            detail.update(f"{mine} recipe(s) in {self.folder()}, {len(message.rows) - mine} other run(s) of yours\n"
                          "enter runs (or resumes) the selected one; a attaches to its run")
        self.listed += 1

    def selected_row(self) -> Row | None:
        table = self.query_one("#recipes", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(str(key))

    def selected(self) -> Path | None:
        row = self.selected_row()
        return row.recipe if row is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_run()  # the table takes enter for itself

    def action_run(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        try:
            load_recipe(row.recipe)
        except RecipeError as exc:
            self.notify(exc.problems[0], severity="error", timeout=10)
            return
        if row.status.startswith(RUNNING):
            self.action_attach()
            return
        if row.slurm:
            self.notify(f"a Slurm run: resume it with onss run {row.recipe} --slurm (or attach with a)", timeout=10)
            return
        self.app.start_run(row.recipe)

    def action_attach(self) -> None:
        from onss_tui.tui.screens.dashboard import DashboardScreen

        row = self.selected_row()
        if row is None:
            return
        if row.run is None or row.status == NEVER_RUN:
            self.notify("this recipe has not been run yet (enter runs it)")
            return
        self.app.push_screen(DashboardScreen(row.run))

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
        self.notify(f"saved recipes/{name}.yaml")
        self.action_reload()

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
