"""Stage settings: the device's ``settings.json`` for this pack.

reads   the recipe's corners, pitches, resolution and ``device`` options; the plan's engine
writes  ``settings.json`` (the writer and its rules: :mod:`onss_tui.device.settings`)
"""

from __future__ import annotations

from onss_tui.pipeline.context import StageContext

__all__ = ["run"]


def run(ctx: StageContext) -> dict:
    from onss_tui.device.settings import DeviceOptions, Instrument, build_settings, write_settings

    r = ctx.recipe
    d = r.device
    corners = [[Instrument(i.name, i.display_name, i.abbreviation) for i in c] for c in r.corners.lists()]
    options = DeviceOptions(data_directory=d.data_directory, looping=d.looping, loop_start=d.loop_start,
                            loop_end=d.loop_end, midi_channel=d.midi_channel, osc_port=d.osc_port)
    settings = build_settings(corners, r.pitches, r.resolution, options)
    note = ctx.engine().preview_note
    if note:
        settings["onss"] = {"preview": True, "note": note}
    write_settings(ctx.run.settings_path, settings)
    return {}
