"""What every wizard step shares: the draft, its problems shown in place, next and back."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Static

from onss_tui.tui.recipe_edit import Check, Draft, Problem, recipe_data

REVIEW = "the review step"


def problem_lines(problems: list[Problem]) -> str:
    return "\n".join(f"error: {p.short()}" for p in problems)


class WizardStep(Screen):
    BINDINGS = [("ctrl+n", "next", "Next"), ("ctrl+b", "back", "Back")]
    FIELDS: tuple[str, ...] = ()  # the recipe fields this step edits: their problems show here
    EARLIER: tuple[str, ...] = ()  # those of the steps before it
    STEP = ""

    left_with: dict | None = None  # the draft when another screen was shown over this one

    @property
    def draft(self) -> Draft:
        return self.app.draft

    def on_screen_suspend(self) -> None:
        self.left_with = recipe_data(self.draft.recipe)

    def on_screen_resume(self) -> None:
        if self.left_with is not None and self.left_with != recipe_data(self.draft.recipe):
            self.reload()  # changed elsewhere (the review's YAML): show the draft's values
        self.show_problems()

    def reload(self) -> None:
        """Show the draft's values in the fields."""

    def problems(self, check: Check | None = None) -> list[Problem]:
        """This step's problems in the recipe as it would be saved."""
        return [p for p in (check or self.draft.check()).problems if p.of(self.FIELDS)]

    def show_problems(self) -> None:
        """Show this step's problems in place (the banner; a step may show them elsewhere)."""
        check = self.draft.check()
        mine = self.problems(check)
        lines = [f"error: {t}" for t in self.typed_problems()] + [f"error: {p.short()}" for p in mine]
        if self.draft.source is not None:  # an opened file: where its other problems are fixed
            later = [p for p in check.problems if p not in mine and not p.of(self.EARLIER)]
            if later:
                from onss_tui.tui.screens.wizard import step_of

                where = ", ".join(f"{p.field or 'the file'} ({step_of(p)})" for p in later[:3])
                lines.append(f"to fix later: {where}{' ...' if len(later) > 3 else ''}")
        try:
            banner = self.query_one("#recipe-problems", Static)
        except Exception:
            return
        banner.update("\n".join(lines))
        banner.display = bool(lines)

    def typed_problems(self) -> list[str]:
        """What is typed in the step's boxes that is no value at all (the draft keeps its old value)."""
        return []

    def save(self) -> str | None:
        """Store the screen's fields in the draft; return a problem to show, or None."""
        mine = self.problems()
        return mine[0].short() if mine else None

    def action_next(self) -> None:
        problem = self.save()
        if problem:
            self.notify(problem, severity="error", timeout=8)
            return
        from onss_tui.tui.screens.wizard import next_of

        following = next_of(type(self))
        if following is not None:
            self.app.push_screen(following())

    def action_back(self) -> None:
        self.save()
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
