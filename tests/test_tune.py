"""`onnxqa tune`: what it measures, what it keeps, and when load() uses it."""

from __future__ import annotations

import json
import shutil

import pytest

import onnxqa
import onnxqa.tune as tuning
from onnxqa import ModelLoadError
from onnxqa.cli import main
from onnxqa.tune import BATCH_SIZES, IN_TURNS_MARGIN, LEADERS, MARGIN, TUNING, tune


@pytest.fixture(scope="module")
def tuned(tiny, tmp_path_factory):
    model = tmp_path_factory.mktemp("tuned") / "model"
    shutil.copytree(tiny, model)
    with pytest.MonkeyPatch.context() as mp:  # the whole grid on any CPU (the limit has a test of its own)
        mp.setattr(tuning, "LIMIT", float("inf"))
        result = tune(model, seconds=1.5)
    assert result["skipped"] == []
    return model, result


def test_each_variant_is_timed_the_leaders_at_every_size_and_thread_count_and_the_fastest_kept(tuned):
    model, result = tuned
    assert json.loads((model / TUNING).read_text()) == result
    settings = {(m["precision"], m["threads"], m["batch_size"]) for m in result["measured"]}
    assert len(settings) == len(result["measured"])  # each once
    cores = max(n for _, n, _ in settings)
    counts = {n for _, n, _ in settings}
    assert 1 in counts and cores == max(counts)
    # every variant with every core at one window per call; the LEADERS fastest of those at every
    # size (every core) and at every other thread count (one window per call)
    assert {(p, n, b) for p, n, b in settings if n == cores and b == 1} == {("fp32", cores, 1), ("int8", cores, 1)}
    leaders = {p for p, n, b in settings if b != 1}
    assert len(leaders) == min(LEADERS, 2) and {b for _, _, b in settings} == set(BATCH_SIZES)
    assert all(n == cores for _, n, b in settings if b != 1)
    assert {(p, n) for p, n, _ in settings if n != cores} == {(p, n) for p in leaders for n in counts - {cores}}
    assert len(settings) == 2 + len(leaders) * (len(BATCH_SIZES) - 1 + len(counts) - 1)
    assert all(m["questions_per_s"] > 0 for m in result["measured"])
    untuned = {"precision": "int8", "threads": cores, "batch_size": 1}  # what load() does without tuning
    turns = result["in_turns"]
    if turns is None:  # nothing came close to the defaults: the fastest timed apart, by the margin
        best = max(result["measured"], key=lambda m: m["questions_per_s"])
        best = {k: best[k] for k in untuned}
        rate = {tuple(m[k] for k in untuned): m["questions_per_s"] for m in result["measured"]}
        faster = rate[tuple(best.values())] >= rate[tuple(untuned.values())] * (1 + MARGIN)
        assert result["chosen"] == (best if faster else untuned)
    else:  # the defaults first, then their contenders, timed in turns: the fastest there kept
        assert turns["settings"][0] == untuned and len(turns["settings"]) == len(turns["times_faster"]) > 1
        x = dict(zip(map(str, turns["settings"]), turns["times_faster"]))
        best = max(turns["settings"], key=lambda s: x[str(s)])
        assert result["chosen"] == (best if x[str(best)] >= 1 + IN_TURNS_MARGIN else untuned)


def test_load_uses_the_choice_for_what_the_caller_left_open(tuned, monkeypatch):
    model, result = tuned
    chosen = result["chosen"]
    monkeypatch.delenv("ONNXQA_THREADS", raising=False)
    with onnxqa.load(model, device="cpu") as qa:
        assert qa.tuning == chosen
        assert qa.precision == chosen["precision"]
        assert qa.engine._settings.threads == chosen["threads"]
        assert qa.options.batch_size == chosen["batch_size"]
        assert qa("Who wrote it?", "It was written by Ada Lovelace.")  # and it answers
    other = "fp32" if chosen["precision"] == "int8" else "int8"
    with onnxqa.load(model, device="cpu", precision=other, threads=3, batch_size=7) as qa:  # explicit wins
        assert (qa.precision, qa.engine._settings.threads, qa.options.batch_size) == (other, 3, 7)
    monkeypatch.setenv("ONNXQA_THREADS", "5")
    with onnxqa.load(model, device="cpu") as qa:
        assert qa.engine._settings.threads == 5


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t["machine"].update(cpu="another CPU"),
        lambda t: t["machine"].update(onnxruntime="0.0.1"),
        lambda t: t["variants"].update({t["chosen"]["precision"]: "0" * 64}),  # the model was exported again
    ],
    ids=["other-cpu", "other-onnxruntime", "other-export"],
)
def test_a_choice_made_elsewhere_is_ignored(tuned, tmp_path, edit):
    model = tmp_path / "model"
    shutil.copytree(tuned[0], model)
    data = json.loads((model / TUNING).read_text())
    edit(data)
    (model / TUNING).write_text(json.dumps(data))
    with onnxqa.load(model, device="cpu") as qa:
        assert qa.tuning is None and qa.precision == "int8" and qa.options.batch_size is None  # the defaults


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"format": 1}',
        '{"format": 1, "chosen": {"threads": 0}}',
        '{"format": 1, "chosen": {"precision": "int8", "threads": true, "batch_size": 1}, '
        '"variants": {"int8": ""}, "machine": {}}',
    ],
)
def test_a_broken_tuning_file_is_a_clear_error(tuned, tmp_path, text):
    model = tmp_path / "model"
    shutil.copytree(tuned[0], model)
    (model / TUNING).write_text(text)
    with pytest.raises(ModelLoadError, match="onnxqa tune"):
        onnxqa.load(model, device="cpu")


def test_cli_dry_run_keeps_nothing(tiny, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    assert main(["tune", str(model), "--seconds", "0.5", "--dry-run", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chosen"]["precision"] in ("fp32", "int8") and not (model / TUNING).exists()
    assert main(["tune", str(model), "--seconds", "-1"]) == 2
    assert "seconds must be positive" in capsys.readouterr().err


def test_the_default_pairs_are_as_long_and_unequal_as_real_questions(tiny):
    from onnxqa.export import tuning_pairs
    from onnxqa.squad import load_squad

    from conftest import shared_path

    pairs = tuning_pairs()
    with onnxqa.load(tiny, device="cpu") as qa:  # BERT's WordPiece, as SQuAD's figures in the docstring
        mine = sorted(qa.window_lengths(pairs))
        _, questions = load_squad(shared_path("data", "squad", "dev-v2.0.json"))
        real = qa.window_lengths([(q.question, q.context) for q in questions[:200]])
    assert len(mine) == len(pairs) == 32  # one window each
    mean, spread = sum(mine) / len(mine), mine[-len(mine) // 10] - mine[len(mine) // 10]
    real_mean = sum(real) / len(real)
    assert 0.8 * real_mean < mean < 1.25 * real_mean and spread > 120


def test_cli_times_the_callers_own_questions(tiny, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(tiny, model)
    paragraphs = [
        {"context": f"Item {i} was made by Ada.", "qas": [{"id": str(i), "question": "Who made it?", "answers": []}]}
        for i in range(40)
    ]
    data = tmp_path / "mine.json"
    data.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}))
    assert main(["tune", str(model), "--seconds", "0.3", "--dry-run", "--json", "--questions", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"] == {"count": 32, "source": "given"}
    data.write_text(json.dumps({"data": []}))
    assert main(["tune", str(model), "--questions", str(data)]) == 2
    assert "has no questions" in capsys.readouterr().err
    assert main(["tune", str(model), "--questions", str(tmp_path / "missing.json")]) == 2
    assert "not a readable SQuAD file" in capsys.readouterr().err
    with pytest.raises(onnxqa.InputError, match="no question/context pairs"):
        tune(model, seconds=0.3, write=False, pairs=[])


@pytest.mark.parametrize(("wider", "chosen"), [(33.0, 4), (30.5, 1)], ids=["beats-the-margin", "within-it"])
def test_only_the_fastest_variant_is_timed_further(tiny, monkeypatch, wider, chosen):
    import onnxqa.tune as tuning

    rates = {("fp32", 2, 1): 10.0, ("int8", 2, 1): 30.0, ("int8", 2, 4): wider, ("int8", 2, 16): 20.0}
    rates[("int8", 1, 1)] = 12.0
    calls = []

    def timed(model_dir, precision, threads, batch_sizes, pairs, seconds, progress):
        calls.append((precision, threads, tuple(batch_sizes)))
        return [
            dict(precision=precision, threads=threads, batch_size=b, questions_per_s=rates[precision, threads, b])
            for b in batch_sizes
        ]

    monkeypatch.setattr(tuning, "_time_settings", timed)
    monkeypatch.setattr(tuning, "_thread_counts", lambda: [1, 2])
    monkeypatch.setattr(tuning, "LEADERS", 1)
    monkeypatch.setattr(tuning, "_in_turns", lambda *args: None)  # no time for it: the margin decides
    result = tune(tiny, seconds=30.0, write=False)  # the fake timings take no time: nothing is left out
    # each variant with every core; then the faster one (int8, also the default) at every size and thread count
    assert calls == [("fp32", 2, (1,)), ("int8", 2, (1,)), ("int8", 2, (1, 4, 16)), ("int8", 1, (1,))]
    assert result["chosen"] == {"precision": "int8", "threads": 2, "batch_size": chosen}
    contenders = [{"precision": "int8", "threads": 2, "batch_size": b} for b in (1, 4)]
    assert result["in_turns"] == {"settings": contenders, "times_faster": None, "passes": 0}


def test_settings_that_would_end_past_the_limit_are_left_out(tiny, monkeypatch):
    import onnxqa.tune as tuning

    rates = {("fp32", 2, 1): 10.0, ("int8", 2, 1): 30.0, ("int8", 2, 4): 33.0, ("int8", 2, 16): 20.0}
    now, calls = [0.0], []

    def timed(model_dir, precision, threads, batch_sizes, pairs, seconds, progress):
        calls.append((precision, threads, tuple(batch_sizes)))
        now[0] += 10.0 * len(batch_sizes)  # a slow model: 10 s a setting, loading included
        return [
            dict(precision=precision, threads=threads, batch_size=b, questions_per_s=rates[precision, threads, b])
            for b in batch_sizes
        ]

    monkeypatch.setattr(tuning, "_time_settings", timed)
    monkeypatch.setattr(tuning, "_clock", lambda: now[0])
    monkeypatch.setattr(tuning, "_thread_counts", lambda: [1, 2])
    monkeypatch.setattr(tuning, "LEADERS", 1)
    result = tune(tiny, seconds=30.0, write=False)  # the limit: 1.8 x 30 = 54 s
    # at 20 s the leader's three sizes fit (about 30 s more); at 50 s its one-thread timing does not
    assert calls == [("fp32", 2, (1,)), ("int8", 2, (1,)), ("int8", 2, (1, 4, 16))]
    assert result["skipped"] == [{"precision": "int8", "threads": 1, "batch_sizes": [1]}]
    assert result["seconds"] == 50.0 and result["chosen"] == {"precision": "int8", "threads": 2, "batch_size": 4}


@pytest.mark.parametrize(("in_turns", "chosen"), [(1.12, "fp32"), (0.97, "int8")], ids=["faster", "slower"])
def test_settings_close_to_the_defaults_are_decided_in_turns(tiny, monkeypatch, capsys, in_turns, chosen):
    """Timed apart, on a host whose speed drifts, fp32 looked 2% slower than int8; in turns decides."""
    rates = {("fp32", 2, 1): 29.4, ("int8", 2, 1): 30.0, ("int8", 2, 4): 26.0, ("int8", 2, 16): 20.0}
    rates |= {("fp32", 2, 4): 28.0, ("fp32", 2, 16): 25.0, ("int8", 1, 1): 15.0, ("fp32", 1, 1): 16.0}
    seen = []

    def timed(model_dir, precision, threads, batch_sizes, pairs, seconds, progress):
        return [
            dict(precision=precision, threads=threads, batch_size=b, questions_per_s=rates[precision, threads, b])
            for b in batch_sizes
        ]

    def turns(model_dir, settings, pairs, deadline):
        seen.append([(s["precision"], s["threads"], s["batch_size"]) for s in settings])
        return [1.0, *(1.0 / in_turns for _ in settings[1:])]  # seconds: the defaults' first

    monkeypatch.setattr(tuning, "_time_settings", timed)
    monkeypatch.setattr(tuning, "_thread_counts", lambda: [1, 2])
    monkeypatch.setattr(tuning, "_in_turns", turns)
    result = tune(tiny, seconds=30.0, write=False)
    # the defaults, then each variant's fastest other setting timed at least 1 - CLOSE times their
    # rate: fp32 at one window per call; int8 at 4 per call (0.87x) is left out
    assert seen == [[("int8", 2, 1), ("fp32", 2, 1)]]
    assert result["chosen"] == {"precision": chosen, "threads": 2, "batch_size": 1}
    assert result["in_turns"] == {
        "settings": [{"precision": p, "threads": 2, "batch_size": 1} for p in ("int8", "fp32")],
        "times_faster": [1.0, round(in_turns, 4)],
        "passes": tuning.TURNS,
    }
    # the command's last line says so where the defaults were beaten in turns
    assert main(["tune", str(tiny), "--dry-run", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (f"({in_turns:.2f}x the defaults in turns)" in out) == (chosen == "fp32"), out

    def cannot_load_together(*args):
        raise onnxqa.ModelLoadError("not enough memory for both")

    monkeypatch.setattr(tuning, "_in_turns", cannot_load_together)  # then the margin over the timings apart
    result = tune(tiny, seconds=30.0, write=False)
    assert result["chosen"] == {"precision": "int8", "threads": 2, "batch_size": 1}  # fp32 was 0.98x apart
    assert result["in_turns"]["passes"] == 0 and result["in_turns"]["times_faster"] is None


def test_settings_are_timed_in_turns_on_the_model_or_not_at_all(tiny, monkeypatch):
    settings = [
        {"precision": "int8", "threads": 1, "batch_size": 1, "questions_per_s": 50.0},
        {"precision": "fp32", "threads": 1, "batch_size": 4, "questions_per_s": 40.0},
    ]
    pairs = [("Who wrote it?", "It was written by Ada in 1843, in London.")] * 4
    batches = []
    real_batch = onnxqa.QuestionAnswerer.batch

    def batch(self, pairs, **options):
        batches.append((self.precision, options["batch_size"]))
        return real_batch(self, pairs, **options)

    monkeypatch.setattr(onnxqa.QuestionAnswerer, "batch", batch)
    monkeypatch.setattr(tuning, "PAUSE", 0.0)
    spent = tuning._in_turns(tiny, settings, pairs, deadline=float("inf"))
    assert len(spent) == 2 and all(t > 0 for t in spent)
    # a warm-up pass each, then TURNS rounds, the order rotated each round
    rounds = [("int8", 1), ("fp32", 4)] * 2 + [("fp32", 4), ("int8", 1)] + [("int8", 1), ("fp32", 4)]
    assert batches == rounds[: 2 * (tuning.TURNS + 1)]
    batches.clear()
    assert tuning._in_turns(tiny, settings, pairs, deadline=0.0) is None  # would end past it: nothing loaded
    assert batches == []
