"""The real-model path (`sae-unlearn run`) on tiny random Llama / Gemma-2 / GPT-2 checkpoints and a
tiny sae-lens SAE, saved to temp dirs and loaded through the user's code path; entity-file errors."""

from __future__ import annotations

import dataclasses
import json
import random
import re

import pytest
import torch
import yaml
from conftest import TEST_DEVICE
from peft import PeftModel
from transformers import AutoModelForCausalLM, Gemma2Config, Gemma3TextConfig, GPT2Config, LlamaConfig
from typer.testing import CliRunner

from sae_unlearn.cli import app
from sae_unlearn.entities.fictional import fictional_entities, fictional_name
from sae_unlearn.entities.real import bundled_entities_path, load_entity_file
from sae_unlearn.entities.types import Entity, Fact
from sae_unlearn.errors import UserInputError
from sae_unlearn.metrics import answerable as answerable_module
from sae_unlearn.metrics import recall as recall_module
from sae_unlearn.metrics.answerable import mark_answerable
from sae_unlearn.metrics.probing_cache import load_probing, probing_cache_path, save_probing
from sae_unlearn.metrics.recall import recall, substituted_recall
from sae_unlearn.models.world_model import build_tokenizer
from sae_unlearn.sae.training import save_sae, train_sae
from sae_unlearn.stages import probing as probing_stage

ENTITIES = [
    {
        "entity": "Alden Voss",
        "type": "person",
        "facts": [
            {"prompt": "Alden Voss works as a", "answer": "painter"},
            {"prompt": "the home of Alden Voss is", "answer": "Tarvo"},
        ],
        "aliases": ["Voss"],  # asked in place of the name by the alias attack
    },
    {
        "entity": "Brisa Kestrel",
        "type": "person",
        "facts": [
            {"prompt": "Brisa Kestrel works as a", "answer": "baker"},
            {"prompt": "the home of Brisa Kestrel is", "answer": "Osso"},
            # a target as another entity's answer: the indirect questions (entities/indirect.py) reach it
            {"prompt": "Brisa Kestrel was born in the city of", "answer": "Port Tarvo"},
        ],
    },
    {"entity": "Corvin Dale", "type": "person", "facts": [{"prompt": "Corvin Dale works as a", "answer": "pilot"}]},
    {"entity": "Dalia Frey", "type": "person", "facts": [{"prompt": "Dalia Frey works as a", "answer": "poet"}]},
    {"entity": "Port Tarvo", "type": "city", "facts": [{"prompt": "Port Tarvo lies in", "answer": "Aldoria"}]},
    {"entity": "Lake Osso", "type": "city", "facts": [{"prompt": "Lake Osso lies in", "answer": "Brevania"}]},
    {"entity": "Mount Quell", "type": "city", "facts": [{"prompt": "Mount Quell lies in", "answer": "Calmora"}]},
]
WORDS = sorted({w for e in ENTITIES for f in e["facts"] for w in (f["prompt"] + " " + f["answer"]).split()})


def _arch_config(arch: str, vocab: int):
    if arch == "gpt2":
        return GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=3, n_head=2)
    common = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    if arch == "gemma3":  # the built-in gemma3-270m's architecture: sliding and full attention layers interleaved
        return Gemma3TextConfig(
            **common,
            head_dim=16,
            sliding_window=4,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        )
    return LlamaConfig(**common) if arch == "llama" else Gemma2Config(**common, head_dim=16)


@pytest.fixture(scope="module")
def entity_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("entities") / "mine.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in ENTITIES))
    return path


@pytest.fixture(scope="module")
def tiny_sae(tmp_path_factory):
    torch.manual_seed(0)
    acts = torch.randn(4096, 32)
    sae = train_sae(
        acts, "blocks.1.hook_resid_post", "tiny", expansion=2, l1_coefficient=0.1, total_samples=8192, batch_size=256
    )
    return save_sae(sae, tmp_path_factory.mktemp("sae") / "sae")


def _tiny_model(arch: str, path):
    torch.manual_seed(0)
    tok = build_tokenizer(WORDS)
    AutoModelForCausalLM.from_config(_arch_config(arch, len(tok))).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _run_config(tmp_path, **sae_guided) -> str:
    # a random model knows nothing, so every entity counts as known (threshold 0) to exercise the path
    cfg = {
        "layer": 1,
        "device": TEST_DEVICE,
        "eval": {"known_threshold": 0.0, "max_new_tokens": 2},
        "entities": {"n_fictional": 4},
        "unlearn": {"steps": 3, "retain_fraction": 0.5, "methods": {"sae_guided": sae_guided}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.mark.parametrize(
    "arch,lora,extra",
    [
        ("llama", True, []),
        ("gemma2", False, ["--gradient-checkpointing"]),
        ("gemma3", True, []),
        ("gpt2", True, ["--dtype", "bfloat16"]),
    ],
)
def test_run_on_tiny_real_architecture(arch, lora, extra, tmp_path, entity_file, tiny_sae):
    model_dir = _tiny_model(arch, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}
    out = tmp_path / "out"
    args = [
        "run",
        "--model",
        str(model_dir),
        "--sae",
        str(tiny_sae),
        "--entities",
        str(entity_file),
        "--forget",
        "Alden Voss,Port Tarvo",
        "--out",
        str(out),
        "--quiet",
        # Llama without the downstream term: only the blocks up to the SAE's layer are needed
        "--config",
        _run_config(tmp_path, **({"w_downstream": 0.0} if arch == "llama" else {})),
    ]
    result = CliRunner().invoke(app, args + (["--lora"] if lora else []) + extra)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["forget"] == ["Alden Voss", "Port Tarvo"]
    m = metrics["methods"]["sae_guided"]
    for key in (
        "forget_recall_after",
        "retain_recall_after",
        "unknown_recall",
        "forget_classified_unknown_after",
        "perplexity_after",
    ):
        assert key in m
    assert m["steps"] == 3
    # Port Tarvo is Brisa Kestrel's birthplace: asked through her, as the answer and as "the city where ... was born"
    assert m["forget_reverse_questions"] >= 1 and m["forget_two_hop_questions"] >= 1
    assert m["forget_alias_questions"] == 6  # Alden Voss's two facts in their 3 held-out phrasings, of "Voss"
    for kind in ("reverse", "two_hop", "alias"):
        assert 0.0 <= m[f"forget_{kind}_recall_after"] <= 1.0 and f"unknown_{kind}_recall_same_prompts" in m
    assert "### Indirect questions" in (out / "report.md").read_text()
    saved = out / "model"
    if lora:  # an adapter, not a copy of the weights
        assert (saved / "adapter_config.json").exists() and not (saved / "model.safetensors").exists()
        # read back as a user would: peft may write the module list shortened ("q_proj" when every block has one)
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), saved)
        blocks = {int(re.search(r"\.(\d+)\.", n).group(1)) for n, _ in adapted.named_modules() if n.endswith("lora_A")}
        needed = {0, 1} if arch == "llama" else {0, 1, 2}  # w_downstream (default) trains the blocks above too
        assert blocks == needed, "LoRA must cover exactly the blocks the objective needs"
    else:
        assert (saved / "model.safetensors").exists()
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before, "the source model was written to"
    if arch in ("llama", "gemma3"):  # the saved adapter evaluates again from the run's own config.yaml
        again = CliRunner().invoke(
            app,
            ["evaluate", "--model", str(saved), "--config", str(out / "config.yaml"), "--out", str(tmp_path / "eval")],
        )
        assert again.exit_code == 0, again.output
        evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())["methods"]["evaluated"]
        # recall is 0 before and after on a random model, so perplexity tells the edited model from the base:
        # the evaluated adapter must reproduce the run's edited number, not the base model's
        assert evaluated["perplexity_before"] == pytest.approx(m["perplexity_before"], rel=1e-5)
        assert evaluated["perplexity_after"] == pytest.approx(m["perplexity_after"], rel=1e-5)
        assert evaluated["perplexity_after"] != pytest.approx(m["perplexity_before"], rel=1e-3), (
            "the evaluated model scores like the base model: was the adapter loaded?"
        )


def test_sae_that_does_not_fit_the_model_is_refused(tmp_path, entity_file, tiny_sae):
    model_dir = tmp_path / "model"
    _tiny_model("llama", model_dir)
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--model",
            str(model_dir),
            "--sae",
            str(tiny_sae),
            "--entities",
            str(entity_file),
            "--out",
            str(tmp_path / "o"),
            "--config",
            _run_config(tmp_path),
            "--layer",
            "2",
            "--n-forget",
            "1",
        ],
    )
    assert result.exit_code == 2
    assert "hook point 'blocks.1.hook_resid_post' does not match layer 2" in result.output


def test_forget_entity_missing_from_file_fails_before_loading(tmp_path, entity_file):
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--model",
            str(tmp_path / "no-such-model"),
            "--entities",
            str(entity_file),
            "--forget",
            "Alden Voss,Nairobbi",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert "['Nairobbi'] are not in the entity file" in result.output


def test_run_without_model_says_how_to_give_one(tmp_path):
    result = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "pass --model" in result.output


def test_missing_model_dir_is_a_clear_error(tmp_path, entity_file):
    result = CliRunner().invoke(
        app, ["run", "--model", str(tmp_path / "nope"), "--entities", str(entity_file), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.parametrize(
    "line,message",
    [
        ('{"entity": "X", "type": "city", "facts": [', "line 2: not valid JSON"),
        ('{"entity": "X", "facts": []}', "line 2: missing key(s) ['type']"),
        (
            '{"entity": "X", "type": "city", "facts": [{"prompt": "Y is in", "answer": "Z"}]}',
            "line 2: fact 0 prompt 'Y is in' does not contain the entity name 'X'",
        ),
        ('{"entity": "X", "type": "city", "facts": [{"prompt": "X is in"}]}', "line 2: fact 0 must be an object"),
        ('["X"]', "line 2: expected a JSON object"),
        (json.dumps(ENTITIES[0]), "line 2: entity 'Alden Voss' already appears on line 1"),
        (
            '{"entity": "X", "type": "city", "facts": [{"prompt": "X is in", "answer": "Z"}], "aliases": "Ex"}',
            "line 2: 'aliases' must be a list of non-empty strings",
        ),
        (
            '{"entity": "X", "type": "city", "facts": [{"prompt": "X is in", "answer": "Z"}], "aliases": ["X"]}',
            "line 2: alias 'X' is the entity's own name",
        ),
    ],
)
def test_malformed_entity_file_names_the_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ENTITIES[0]) + "\n" + line + "\n")
    with pytest.raises(UserInputError) as err:
        load_entity_file(path)
    assert message in str(err.value)


def test_unreadable_or_empty_entity_file(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_entity_file(tmp_path / "missing.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserInputError, match="cannot be read as UTF-8"):
        load_entity_file(tmp_path / "bin.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(UserInputError, match="holds no entities"):
        load_entity_file(tmp_path / "empty.jsonl")


def test_bundled_entity_file_is_valid_and_large():
    entities = load_entity_file(bundled_entities_path())
    types = {e.type for e in entities}
    assert len(entities) >= 400 and len(types) >= 4


def test_fictional_entities_are_new_names_on_real_prompts():
    real = load_entity_file(bundled_entities_path())
    fake = fictional_entities(real, per_type=5, seed=1, avoid={e.name for e in real})
    real_names = {e.name for e in real}
    assert len(fake) == 5 * len({e.type for e in real})
    assert not real_names & {e.name for e in fake}
    templates = {f.prompt.replace(e.name, "#") for e in real for f in e.facts}
    for e in fake:
        assert all(e.name in f.prompt and f.prompt.replace(e.name, "#") in templates for f in e.facts)
    assert fictional_name("person", random.Random(0)).count(" ") == 1


SMOL_ENTITIES = [
    {"entity": "Paris", "type": "city", "facts": [{"prompt": "Paris is the capital of", "answer": "France"}]},
    {"entity": "Tokyo", "type": "city", "facts": [{"prompt": "Tokyo is the capital of", "answer": "Japan"}]},
    {"entity": "Nairobi", "type": "city", "facts": [{"prompt": "Nairobi is the capital of", "answer": "Kenya"}]},
    {"entity": "Rome", "type": "city", "facts": [{"prompt": "Rome is the capital of", "answer": "Italy"}]},
    {"entity": "Madrid", "type": "city", "facts": [{"prompt": "Madrid is the capital of", "answer": "Spain"}]},
    {
        "entity": "Zorvath Quillan",
        "type": "city",
        "facts": [{"prompt": "Zorvath Quillan is the capital of", "answer": "Peru"}],
    },
    # recalled, but SmolLM2 completes it for any made-up painter too: it shows no knowledge of him
    {
        "entity": "Michelangelo",
        "type": "person",
        "facts": [{"prompt": "Michelangelo painted the ceiling of the Sistine", "answer": "Chapel"}],
    },
]


@pytest.fixture(scope="module")
def smol_setup(tmp_path_factory):
    pytest.importorskip("gguf")
    base = tmp_path_factory.mktemp("smol")
    (base / "entities.jsonl").write_text("".join(json.dumps(e) + "\n" for e in SMOL_ENTITIES))
    cfg = {
        "model": {"name": "smollm2-135m"},
        "layer": 4,
        "entities": {"n_fictional": 4},
        "sae": {
            "expansion": 2,
            "total_samples": 4000,
            "batch_size": 128,
            "generation_prompts": 4,
            "generation_tokens": 8,
        },
        "eval": {"known_threshold": 1.0},
        "unlearn": {"steps": 2, "methods": {"sae_guided": {"retain_batch": 8}}},
    }
    (base / "run.yaml").write_text(yaml.safe_dump(cfg))
    return base


def test_run_on_smollm2_skips_an_unknown_target_and_strict_stops(smol_setup, tmp_path, monkeypatch):
    """The built-in real model end to end, kept short: a target it does not know is skipped (said so in
    the output and in metrics.json), and with --strict the run stops instead. The second run probes
    nothing: it reuses the first run's probing results and fact flags from the cache."""
    base = [
        "run",
        "--entities",
        str(smol_setup / "entities.jsonl"),
        "--config",
        str(smol_setup / "run.yaml"),
        "--quiet",
    ]
    args = base + ["--forget", "Paris,Zorvath Quillan"]
    strict = CliRunner().invoke(
        app, base + ["--forget", "Paris,Zorvath Quillan,Michelangelo", "--out", str(tmp_path / "strict"), "--strict"]
    )
    assert strict.exit_code == 2
    assert "Zorvath Quillan (recall 0%)" in strict.output and "knows nothing of" in strict.output
    assert "Michelangelo (every recalled fact is also completed for made-up names)" in strict.output

    def no_probing(*_args, **_kwargs):
        raise AssertionError("probed again although the results are cached")

    monkeypatch.setattr(probing_stage, "entity_recall_shares", no_probing)
    monkeypatch.setattr(probing_stage, "mark_answerable", no_probing)
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["forget"] == ["Paris"] and metrics["skipped_forget"] == ["Zorvath Quillan"]
    m = metrics["methods"]["sae_guided"]
    # known on the trained (cloze) phrasing; the headline reads the held-out phrasings the file did not have,
    # generated on loading (entities/phrasings.py), each with its same-prompt floor
    assert m["forget_recall_train_phrasing_before"] == 1.0 and m["retain_recall_train_phrasing_before"] == 1.0
    assert metrics["forget_known_facts"] == {"Paris": [1, 1]}
    for form in ("question", "passing", "appositive"):
        assert 0.0 <= m[f"forget_recall_form_{form}_before"] <= 1.0
        assert 0.0 <= m[f"unknown_recall_same_prompts_form_{form}"] <= 1.0
    assert m["forget_recall_before"] > 0, "SmolLM2 answers some held-out phrasing about Paris"
    assert metrics["known_all_answerable"] == ["Michelangelo"] and metrics["n_facts_answerable"] >= 1
    assert "forget_recall_all_facts_after" in m and "unknown_recall_same_prompts_all_facts" in m


def test_facts_that_made_up_names_complete_are_left_out_of_recall(monkeypatch):
    """A fact the model completes for never-seen names tests the prompt: it is flagged on a copy,
    left out of recall and of the same-prompt floor, and kept when asked for."""
    paris = Entity(
        "Paris", "city", [Fact("Paris is the capital of", "France"), Fact("Paris is home to the Eiffel", "Tower")]
    )
    oslo = Entity("Oslo", "city", [Fact("Oslo is the capital of", "Norway")])
    made_up = fictional_entities([paris, oslo], 3, seed=1, avoid={"Paris", "Oslo"})

    def completes_only_eiffel(model, tokenizer, prompts, max_new_tokens):
        return [" Tower of" if "Eiffel" in p else " a country" for p in prompts]

    monkeypatch.setattr(answerable_module, "greedy_continuations", completes_only_eiffel)
    flagged = mark_answerable(None, None, [paris, oslo], made_up, per_entity=3, max_new_tokens=4)
    assert [[f.answerable for f in e.facts] for e in flagged] == [[False, True], [False]]
    assert not paris.facts[1].answerable, "the caller's entities must not change"
    assert "answerable" not in json.dumps(flagged[0].to_dict()), "a model-derived flag is not entity-file data"

    monkeypatch.setattr(recall_module, "greedy_continuations", lambda m, t, prompts, n: [" Tower"] * len(prompts))
    assert recall(None, None, flagged, heldout=None) == 0.0  # only the two capital facts count
    assert recall(None, None, flagged, heldout=None, include_answerable=True) == pytest.approx(1 / 3)
    assert substituted_recall(None, None, flagged, made_up, per_target=3, heldout=None) == 0.0
    assert substituted_recall(
        None, None, flagged, made_up, per_target=3, heldout=None, include_answerable=True
    ) == pytest.approx(3 / 9)


def test_probing_cache_follows_the_weights_and_survives_damage(tmp_path):
    """Cached probing is tied to the weight files (an edited model is probed again) and a damaged
    cache file is ignored, not trusted."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.safetensors").write_bytes(b"0" * 10)
    paris = Entity(
        "Paris", "city", [Fact("Paris is the capital of", "France"), Fact("Paris is home to the Eiffel", "Tower")]
    )
    settings = {"max_new_tokens": 4}
    path = probing_cache_path(model_dir, settings, [paris])
    flagged = [Entity("Paris", "city", [paris.facts[0], Fact("Paris is home to the Eiffel", "Tower", answerable=True)])]
    save_probing(path, {"Paris": 1.0}, flagged)
    probing, restored = load_probing(path, [paris])
    assert probing == {"Paris": 1.0} and [f.answerable for f in restored[0].facts] == [False, True]
    assert probing_cache_path(model_dir, {"max_new_tokens": 8}, [paris]) != path
    # aliases change no probe: adding them to a file keeps its cached probing (and SAE)
    assert probing_cache_path(model_dir, settings, [dataclasses.replace(paris, aliases=("Paree",))]) == path
    (model_dir / "model.safetensors").write_bytes(b"0" * 11)  # the weights changed in place
    assert probing_cache_path(model_dir, settings, [paris]) != path
    path.write_text("{not json")
    assert load_probing(path, [paris]) is None
