"""The wizard: audio -> corners -> pitches and grid -> settings -> review (save, run). Keys: ctrl+n next, ctrl+b back.

The screens edit one :class:`~onss_tui.tui.recipe_edit.Draft`: a :class:`~onss_tui.recipe.Recipe`
changed with ``model_copy(update=...)`` as fields change, so every setting of an opened recipe
survives the wizard, and its file keeps its comments and layout (recipe_edit says how). The recipe
model checks it, so the wizard and ``onss recipe check`` agree on every rule; each step shows the
problems of its own fields where they are, with the line and the fix, and the review step shows
them all (its YAML can be edited, for the fields no step has).

Every change is autosaved (the app does it, on a thread); leaving with unsaved changes asks first.
One module per step (``step`` has what they share); this one puts them in order.
"""

from __future__ import annotations

from textual.screen import Screen

from onss_tui.tui.recipe_edit import Draft, Problem
from onss_tui.tui.screens.audio import AudioScreen, AudioTree
from onss_tui.tui.screens.corners import CornersScreen
from onss_tui.tui.screens.dialogs import ResumeDraft, UnsavedChanges
from onss_tui.tui.screens.grid import GridScreen
from onss_tui.tui.screens.review import DraftSaved, DraftSaveFailed, ReviewScreen, SlurmResult, submit_to_slurm
from onss_tui.tui.screens.settings import SettingsScreen
from onss_tui.tui.screens.step import REVIEW, WizardStep

__all__ = ["Draft", "AudioScreen", "AudioTree", "CornersScreen", "GridScreen", "SettingsScreen", "ReviewScreen",
           "UnsavedChanges", "ResumeDraft", "DraftSaved", "DraftSaveFailed", "SlurmResult", "submit_to_slurm", "STEPS",
           "next_of", "step_of"]

STEPS: tuple[type[WizardStep], ...] = (AudioScreen, CornersScreen, GridScreen, SettingsScreen, ReviewScreen)


def next_of(step: type[Screen]) -> type[WizardStep] | None:
    """The step after ``step`` (None after the last)."""
    for i, s in enumerate(STEPS[:-1]):
        if issubclass(step, s):
            return STEPS[i + 1]
    return None


def step_of(problem: Problem) -> str:
    """The step where a problem's field is edited (the review for the fields no step has)."""
    for screen in STEPS[:-1]:
        if problem.of(screen.FIELDS):
            return screen.STEP
    return REVIEW
