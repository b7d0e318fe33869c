"""The preview engine's generate workers report samples/s like NSynth's (a whole shard at a time), so
the dashboard's cards, `onss run` and `onss status` show a rate and a time left for every engine."""

import json

from onss_tui.pipeline.runner import Runner
from tests.helpers import small_recipe, write_notes


def test_preview_progress_events_carry_a_rate_and_the_whole_shards_samples(tmp_path):
    write_notes(tmp_path / "audio", ["a", "b", "c", "d"], [60, 64])
    run_dir = Runner.from_file(small_recipe(tmp_path), device="cpu").execute()
    events = [json.loads(line) for line in (run_dir / "events" / "generate-w0.jsonl").read_text().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    done = [e for e in events if e["event"] == "shard_done"]
    assert progress and len(progress) == len(done)
    for e in progress:
        assert e["sample"] == e["samples"] == 8192  # the recipe's sample_length: the shard is whole
        assert e["samples_per_s"] > 0
        assert e["batch"] <= e["batches"]
