"""What this installation and machine offer a run: python, torch and CUDA, the GPUs (NVML), the
checkpoint, Slurm's sbatch, MP3 support (libsndfile) and ffmpeg. ``onss env`` prints it and the
wizard's environment screen shows it; both read it here."""

from __future__ import annotations

import sys

__all__ = ["environment", "environment_lines", "slurm_status", "audio_status"]


def environment() -> dict:
    """What the wizard's environment screen shows, and what a run needs: python, torch and CUDA, the
    GPUs (NVML), the checkpoint, Slurm's sbatch, MP3 support (libsndfile) and ffmpeg. Never raises."""
    import platform

    from onss_tui import __version__
    from onss_tui.gpu import probe
    from onss_tui.model.install import checkpoint_info

    env: dict = {"onss": __version__, "python": {"version": platform.python_version(), "executable": sys.executable}}
    try:
        import torch

        cuda = torch.cuda.is_available()
        env["torch"] = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
                        "cuda_devices": torch.cuda.device_count() if cuda else 0}
    except Exception as exc:  # noqa: BLE001 (not installed, or a broken install: said, not raised)
        env["torch"] = {"version": None, "problem": f"{type(exc).__name__}: {exc}"}
    gpus = probe()
    env["gpus"] = {"driver": gpus.driver, "cuda_driver": gpus.cuda_driver, "problem": gpus.problem,
                   "summary": gpus.summary(), "devices": [g.__dict__ for g in gpus.gpus]}
    try:
        info = checkpoint_info(verify=False)
        env["checkpoint"] = {"prefix": str(info.prefix), "installed": info.installed, "problem": info.problem}
    except Exception as exc:  # noqa: BLE001
        env["checkpoint"] = {"prefix": None, "installed": False, "problem": str(exc)}
    env["slurm"] = _slurm()
    env["audio"] = _audio()
    return env


def environment_lines(env: dict) -> list[str]:
    """``onss env``'s text: one line a part (GPUs: one more line each)."""
    out: list[str] = []
    py, t, g, ck, sl, au = env["python"], env["torch"], env["gpus"], env["checkpoint"], env["slurm"], env["audio"]
    out.append(f"onss        {env['onss']}")
    out.append(f"python      {py['version']}  ({py['executable']})")
    if t.get("version") is None:
        out.append(f"torch       not usable: {t.get('problem')}")
    else:
        cuda = (f"CUDA {t['cuda']}, {t['cuda_devices']} device(s)" if t["cuda_available"] else
                f"no CUDA ({'CUDA ' + t['cuda'] + ' build, no usable GPU' if t['cuda'] else 'a CPU build'})")
        out.append(f"torch       {t['version']}: {cuda}")
    out.append(f"GPUs        {g['summary']}" + (f"; CUDA driver {g['cuda_driver']}" if g["cuda_driver"] else ""))
    for d in g["devices"]:
        out.append(f"  {d['index']}  {d['name']}  {d['memory_used'] / 2**30:.1f}/{d['memory_total'] / 2**30:.0f} GiB, "
                   f"{d['utilization']}% load, {d['temperature']}°C, {d['power']:.0f} W")
    if ck["installed"]:
        out.append(f"checkpoint  {ck['prefix']}" + (f"  ({ck['problem']}; check it: onss model info)" if ck["problem"]
                                                    else "  (onss model info verifies it)"))
    else:
        out.append(f"checkpoint  not installed (at {ck['prefix']}): onss model download (the nsynth engine "
                   "needs it; the preview engine runs without)")
    out.append(f"slurm       {_slurm_line(sl)}")
    out.append(f"audio       {_audio_line(au)}")
    out.append(f"ffmpeg      {au['ffmpeg']}" if au["ffmpeg"] else
               "ffmpeg      not on PATH (only needed to convert notes onss does not read, e.g. .m4a)")
    return out


def _slurm() -> dict:
    import shutil

    sbatch = shutil.which("sbatch")
    return {"sbatch": sbatch, "available": sbatch is not None}


def _audio() -> dict:
    import shutil

    try:
        import soundfile as sf

        from onss_tui.pipeline.clean import mp3_unavailable

        why = mp3_unavailable()  # (what the clean stage checks: the formats, then a test write)
        audio = {"libsndfile": sf.__libsndfile_version__, "soundfile": sf.__version__, "mp3": why is None,
                 "mp3_problem": why}
    except Exception as exc:  # noqa: BLE001 (libsndfile missing: no audio at all)
        audio = {"libsndfile": None, "mp3": False, "problem": str(exc)}
    audio["ffmpeg"] = shutil.which("ffmpeg")
    return audio


def _slurm_line(sl: dict) -> str:
    return (f"sbatch at {sl['sbatch']}: onss run RECIPE --slurm can submit" if sl["available"] else
            "no sbatch on PATH: runs are local (onss run RECIPE --slurm needs Slurm)")


def _audio_line(au: dict) -> str:
    if au["libsndfile"] is None:
        return f"libsndfile not usable: {au.get('problem')}"
    from onss_tui.pipeline.stages.clean import MP3_FIX

    return (f"libsndfile {au['libsndfile']} (soundfile {au['soundfile']}): " +
            ("MP3 works (clean: mp3)" if au["mp3"] else
             f"NO MP3: {au['mp3_problem']}; a recipe's clean: {{mode: mp3}} is refused. {MP3_FIX}"))


def slurm_status() -> str:
    """One line for the environment screen: can runs go to Slurm."""
    return "slurm: " + _slurm_line(_slurm())


def audio_status() -> str:
    """One line for the environment screen: does the clean mode mp3 work here."""
    return "audio: " + _audio_line(_audio())
