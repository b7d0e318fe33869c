"""The errors that are a user's to fix (a bad recipe, a missing checkpoint, a folder that is not
writable, ...): their messages name the file and the fix. The CLI prints them and exits 2; the
wizard shows them on its screen. Anything else is onss's own bug."""

from __future__ import annotations


def user_errors() -> tuple[type[BaseException], ...]:
    from onss_tui.audio.io import AudioError
    from onss_tui.cluster.scheduler import SlurmError
    from onss_tui.device.deploy import DeployError
    from onss_tui.model.checkpoint import CheckpointError
    from onss_tui.model.install import InstallError
    from onss_tui.pipeline.context import RunError
    from onss_tui.pipeline.prepare import PrepareError
    from onss_tui.pipeline.rundir import RunLocked
    from onss_tui.recipe import RecipeError

    return (CheckpointError, InstallError, AudioError, RecipeError, PrepareError, RunError, RunLocked,
            DeployError, SlurmError)
