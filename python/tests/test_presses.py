"""Press objects: the preset and options each stands for, the CLI's refusals, and
generation through every press equal to the CLI's."""

from __future__ import annotations

import pytest

import kvsqueeze as kvs


def test_each_press_is_the_cli_preset_it_names():
    snap = kvs.SnapKVPress(compression_ratio=0.75)
    cases = {
        "snapkv": snap,
        "pyramidkv": kvs.PyramidKVPress(compression_ratio=0.75),
        "streamingllm": kvs.StreamingLLMPress(compression_ratio=0.75),
        "knorm": kvs.KnormPress(compression_ratio=0.75),
        "tova": kvs.TOVAPress(compression_ratio=0.75),
        "h2o": kvs.ObservedAttentionPress(compression_ratio=0.75),
        "ada-snapkv": kvs.AdaKVPress(snap),
        "ada-pyramidkv": kvs.AdaKVPress(kvs.PyramidKVPress(compression_ratio=0.75)),
        "criticalkv": kvs.CriticalKVPress(snap),
        "critical-ada-snapkv": kvs.CriticalAdaKVPress(snap),
        "lava": kvs.LavaPress(compression_ratio=0.75),
        "lava-heads": kvs.LavaPress(compression_ratio=0.75, variant="heads"),
        "lava-layers": kvs.LavaPress(compression_ratio=0.75, variant="layers"),
        "ada-pyramidkv ": kvs.Press("ada-pyramidkv", compression_ratio=0.75),
    }
    for preset, press in cases.items():
        o = press.options()
        assert o.preset == preset.strip()
        assert o.ratio == pytest.approx(0.25)  # kvpress's compression_ratio is the share removed
        assert o.budget == 0
    assert set(p.strip() for p in cases) == set(kvs.preset_names()) - {"none"}


def test_options_reach_the_engine():
    o = kvs.AdaKVPress(kvs.PyramidKVPress(budget=96, window_size=16, kernel_size=5, pooling="avg", beta=10,
                                          gqa_reduce="max", skip_layers=2, kv_type="f32"), alpha_safeguard=0.4).options()
    assert (o.preset, o.budget, o.ratio, o.window, o.pool_kernel, o.pool) == ("ada-pyramidkv", 96, 0.0, 16, 5, "avg")
    assert (o.pyramid_beta, o.alpha, o.gqa_reduce, o.skip_layers, o.kv_type) == (10, 0.4, "max", 2, "f32")
    assert kvs.StreamingLLMPress(budget=40, n_sink=8).options().sinks == 8
    p = kvs.Press("streamingllm", budget=40, n_sink=2, compress_every=16).options()
    assert (p.preset, p.sinks, p.compress_every) == ("streamingllm", 2, 16)
    assert kvs.SnapKVPress().options().ratio == 1.0  # compression_ratio 0 keeps everything, as in kvpress


# (press, the same press as CLI flags)
REFUSED = [
    (kvs.SnapKVPress(budget=8), ["--press", "snapkv", "--budget", "8"]),
    (kvs.SnapKVPress(compression_ratio=0.5, kernel_size=4), ["--press", "snapkv", "--ratio", "0.5", "--pool-kernel", "4"]),
    (kvs.SnapKVPress(budget=64, window_size=0), ["--press", "snapkv", "--budget", "64", "--window", "0"]),
    (kvs.AdaKVPress(kvs.SnapKVPress(compression_ratio=0.5), alpha_safeguard=1.5),
     ["--press", "ada-snapkv", "--ratio", "0.5", "--alpha", "1.5"]),
    (kvs.PyramidKVPress(budget=64, beta=0.5), ["--press", "pyramidkv", "--budget", "64", "--pyramid-beta", "0.5"]),
    (kvs.Press("tova", budget=64, window_size=100), ["--press", "tova", "--budget", "64", "--window", "100"]),
    (kvs.Press("fastkv", budget=64), ["--press", "fastkv", "--budget", "64"]),
]


@pytest.mark.parametrize("press, flags", REFUSED)
def test_impossible_presses_raise_the_clis_message(press, flags, stories, stories_path, cli):
    expected = cli.error("generate", "-m", stories_path, "-p", "Once upon a time", *flags)
    with pytest.raises(ValueError) as caught:
        press.validate()
    assert str(caught.value) == expected
    with pytest.raises(ValueError) as caught:
        stories.generate("Once upon a time", press=press)
    assert str(caught.value) == expected


def test_combinations_no_preset_has_are_refused():
    with pytest.raises(ValueError, match="AdaKVPress wraps SnapKVPress or PyramidKVPress, not KnormPress"):
        kvs.AdaKVPress(kvs.KnormPress(compression_ratio=0.5)).options()
    with pytest.raises(ValueError, match="CriticalKVPress wraps SnapKVPress, not TOVAPress"):
        kvs.CriticalKVPress(kvs.TOVAPress(compression_ratio=0.5)).options()
    with pytest.raises(ValueError, match="CriticalAdaKVPress wraps SnapKVPress"):
        kvs.CriticalAdaKVPress(kvs.AdaKVPress(kvs.SnapKVPress())).options()
    with pytest.raises(ValueError, match="compression_ratio must be in"):
        kvs.SnapKVPress(compression_ratio=1.0).options()
    with pytest.raises(ValueError, match="either budget or compression_ratio"):
        kvs.SnapKVPress(compression_ratio=0.5, budget=64).options()
    with pytest.raises(ValueError, match="variant"):
        kvs.LavaPress(variant="both")
    with pytest.raises(ValueError, match="--pool takes max or avg"):
        kvs.SnapKVPress(budget=64, pooling="median").validate()
    with pytest.raises(ValueError, match="--sinks must be >= 0"):
        kvs.StreamingLLMPress(budget=64, n_sink=-1).validate()
    with pytest.raises(TypeError, match="unexpected option 'ratio'"):
        kvs.Press("snapkv", ratio=0.5)


CLI_PRESETS = ["snapkv", "pyramidkv", "ada-snapkv", "ada-pyramidkv", "streamingllm", "knorm", "tova", "h2o",
               "criticalkv", "critical-ada-snapkv", "lava", "lava-heads", "lava-layers"]


@pytest.mark.parametrize("preset", CLI_PRESETS)
def test_generation_through_each_press_equals_the_cli(preset, stories, stories_path, long_story, cli):
    prompt = long_story["text"]
    expected = cli.continuation("-m", stories_path, "-p", prompt, "--press", preset, "--budget", "64", "--greedy",
                                "-n", "24", "-t", "2", echoed=prompt)
    stream = stories.generate(prompt, max_tokens=24, temperature=0, press=kvs.Press(preset, budget=64), stream=True)
    assert stream.read() == expected
    stats = stream.stats
    assert stats["kv_bytes_after_prompt"] < stats["kv_bytes_uncompressed"]
    budgets = [b for layer in stats["head_budgets"] for b in layer]
    assert budgets and all(0 < b <= stats["prompt_tokens"] for b in budgets)


def test_decode_time_compression_equals_the_cli(stories, stories_path, cli):
    prompt = "Once upon a time"
    expected = cli.continuation("-m", stories_path, "-p", prompt, "--press", "streamingllm", "--budget", "48",
                                "--compress-every", "8", "--greedy", "-n", "120", "--ignore-eos", echoed=prompt)
    stream = stories.generate(prompt, max_tokens=120, temperature=0, ignore_eos=True,
                              press=kvs.StreamingLLMPress(budget=48), compress_every=8, stream=True)
    assert stream.read() == expected
    # Heads never hold more than budget + compress_every rows at the end.
    assert stream.stats["kv_bytes"] <= stream.stats["kv_bytes_uncompressed"] * (48 + 8) / 5
