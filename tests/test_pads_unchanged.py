"""The pads of two fixed recipes, byte for byte, as the pipeline made them before the run plan
(recorded on main at 24bb3c6): a refactoring of how a run is decided and executed must not change
what it makes."""

from onss_tui.pipeline.demo import make_demo
from onss_tui.pipeline.runner import Runner
from tests.helpers import digests, small_recipe, write_notes

DEMO = {
    "sine_saw_pluck_bell.bin": "e150eb4aca58adae965da9b161e5aaa282c920c657fa09f19bbc7d4d35df9104",
}

TWO_A_CORNER = {
    "a_b_c_d.bin": "5903c4da79439a88c08a55126e3f64bb443dbcc4e66a312a59aca8e9508c8c94",
    "a_b_c_h.bin": "0ddf7239eb1892beea022de6dc84969e5f152c27dc454b02b4a972570438ee08",
    "a_b_g_d.bin": "11e526c4b54aa93afbdcb39fdfe505af985dc212bbc2f166e65dee060884bb56",
    "a_b_g_h.bin": "b8423a19977928ce5a9b38385ce4a4321337a95bbc6310e0ff855e23f429f2a1",
    "a_f_c_d.bin": "89c2eb4074384bc25752c855647c3b7b9f517e6b45d971e3567bad3938c967a9",
    "a_f_c_h.bin": "6f96086fb565bdc9cb462b5ce8496d6b50c83816d80003301e7482d948ea5801",
    "a_f_g_d.bin": "0b8ea4640a09068827cb18151800bcd5caa19c2893d02cd13c0a80b518ddf926",
    "a_f_g_h.bin": "dc113106b438d38bd65b71a16aec28fe5a9790c2b1f58601c8eae1fdf53bc3c4",
    "e_b_c_d.bin": "d06bdb338ab16f57609d0780b6732c461fba05ebeeb84f96385421cd5a54d2ae",
    "e_b_c_h.bin": "7e46a89cc16c8c3460b4ae0b304e1b5d9e97585c0084fc3831fad2aea4648bac",
    "e_b_g_d.bin": "35c4d96a44322bf0bb6718b11ef1c32a27cef3ba02e9edfa4fc07e577adf968f",
    "e_b_g_h.bin": "3c61fb4b4368734b55fd52b5e14dd905ca23e2e9e37b528754564775a5e87489",
    "e_f_c_d.bin": "71c8c68029567c14ee5663f9c4dc26f3eed222599b4afdf1d460166090f0de1c",
    "e_f_c_h.bin": "9257b2d88743de61393ba1a06970440e6f13e1d563245838cb117ee0ab5816da",
    "e_f_g_d.bin": "cfd3a578db73094ea920ac1f5b01b2c4ed71d8c2a2187f98b4b849f4caaeba20",
    "e_f_g_h.bin": "e06fdc240dfa24b79a515d72c2744c37f3609c809879d2c68b1d832cced57924",
}


def test_the_demo_pads_are_unchanged(tmp_path):
    Runner.from_file(make_demo(tmp_path), device="cpu").execute()
    assert digests(tmp_path / "run" / "pads") == DEMO


def test_two_instruments_a_corner_pads_are_unchanged(tmp_path):
    names = ["a", "b", "c", "d", "e", "f", "g", "h"]
    write_notes(tmp_path / "audio", names, [48, 60, 72])
    recipe = small_recipe(tmp_path, corners={"top_left": ["a", "e"], "top_right": ["b", "f"],
                                             "bottom_left": ["c", "g"], "bottom_right": ["d", "h"]},
                          pitches=[48, 60, 72], resolution=5, generation={"sample_length": 8192, "batch_size": 7})
    Runner.from_file(recipe, device="cpu").execute()
    assert digests(tmp_path / "run" / "pads") == TWO_A_CORNER
