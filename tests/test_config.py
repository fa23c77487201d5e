"""Config loading: defaults from the schema, merging, key-naming errors, command-line strings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from n2v_repro.config import ConfigError, PipelineConfig, load_config, plain, validate_config
from n2v_repro.report.references import deviations

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_defaults_fill_every_section() -> None:
    config = validate_config({})
    assert config["sigmas"] == [10, 25, 30, 50]
    assert config["train"]["masking"] == {
        "kind": "uniform_withCP",
        "percentage": 0.198,
        "radius": 2,
    }
    assert config["parity"]["tolerance"] == 1e-4


def test_test_config_merges_over_the_full_one() -> None:
    config = load_config(REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "test.yaml")
    assert config["sigmas"] == [25]
    assert config["train"]["epochs"] == 2 and config["train"]["arch"] == "n2v_unet32"
    assert config["data"]["mirrors"]  # kept from config.yaml
    # Two recipes, one per validation scheme, two seeds: what the Done-when run needs.
    typed = PipelineConfig.from_mapping(config)
    schemes = {r.name: r.train.validation.scheme for r in typed.run_recipes}
    assert schemes == {"paper": "heldout_train", "port": "bsd68_split"}
    assert typed.seeds == (1, 2) and typed.frameworks == ("torch", "jittor")
    paper = typed.recipe("paper").train
    # The test shrinks the paper recipe; the rest of it is still the paper's.
    assert (paper.epochs, paper.batch_size, paper.arch) == (2, 4, "n2v_unet32")
    assert (paper.train_set, paper.init, paper.schedule.kind) == (
        "train400",
        "glorot_uniform",
        "plateau",
    )


def test_paper_config_is_the_reference_recipe() -> None:
    config = PipelineConfig.from_mapping(
        load_config(REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "paper.yaml")
    )
    assert config.recipes == ("paper",) and config.sigmas == (25,)
    train = config.recipe("paper").train
    settings = {**plain(train), "data": {"train_images": None, "bsd68_images": None}}
    settings["data"]["patch_size"] = config.data.patch_size
    # Every key of the reference code's recipe that this project names has its value.
    assert deviations(settings) == []
    assert train.optimizer.lr == 4e-4 and train.optimizer.eps == 1e-7
    assert train.validation.scheme == "heldout_train" and train.validation.heldout_images == 4


def test_recipe_book_entries_merge_over_config_yaml_recipes_by_name() -> None:
    """Without config.yaml loaded (a run in another folder), its recipes are still defined."""
    merged = validate_config({"recipe_book": {"paper": {"epochs": 3}, "mine": {}}})
    assert merged["recipe_book"]["paper"]["epochs"] == 3
    assert merged["recipe_book"]["paper"]["batch_size"] == 128
    assert set(merged["recipe_book"]) == {"port", "paper", "cpu", "cpu_juglab_schedule", "mine"}


def test_plain_train_section_is_one_recipe() -> None:
    """An older single-recipe config (just `train:`) runs as the recipe `port`."""
    config = PipelineConfig.from_mapping({"train": {"arch": "n2v_unet", "epochs": 7}, "seed": 5})
    (recipe,) = config.run_recipes
    assert recipe.name == "port" and recipe.train.arch == "n2v_unet" and recipe.train.epochs == 7
    assert config.seeds == (5,)  # seeds null: the master seed


def test_recipe_overrides_merge_over_the_train_section() -> None:
    config = PipelineConfig.from_mapping(
        {
            "recipes": ["a", "b"],
            "train": {"epochs": 9, "optimizer": {"lr": 0.01}},
            "recipe_book": {"a": {}, "b": {"optimizer": {"eps": 1e-3}, "init": "glorot_uniform"}},
        }
    )
    a, b = config.run_recipes
    assert (a.train.epochs, a.train.optimizer.lr, a.train.init) == (9, 0.01, "torch_default")
    assert (b.train.epochs, b.train.optimizer.lr, b.train.optimizer.eps) == (9, 0.01, 1e-3)
    assert b.train.init == "glorot_uniform"
    assert a.train.data_tag == "bsd400_bsd68_split"


def test_command_line_strings_become_the_schema_types() -> None:
    """`snakemake --config sigmas=[25]` passes list items as strings."""
    config = validate_config(
        {"sigmas": ["25", "50"], "train": {"optimizer": {"lr": "1e-3"}, "augment": "false"}}
    )
    assert config["sigmas"] == [25, 50]
    assert config["train"]["optimizer"]["lr"] == 1e-3
    assert config["train"]["augment"] is False


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"sigmas": ["abc"]}, "sigmas[0]"),
        ({"train": {"optimizer": {"lr": "fast"}}}, "train.optimizer.lr"),
        ({"recipes": ["Port"]}, "recipes[0]"),
        ({"recipe_book": {"paper": {"epochs": "many"}}}, "recipe_book.paper.epochs"),
        ({"recipe_book": {"port": {"init": "he_normal"}}}, "recipe_book.port.init"),
        ({"seeds": [1, 1]}, "seeds"),
        (
            {"recipes": ["paper"], "recipe_book": {"paper": {"valid_tiles": 17}}},
            "recipe_book.paper.valid_tiles",
        ),
    ],
)
def test_bad_values_name_the_key(config: dict, key: str) -> None:
    """More cases, on the merged config files, in tests/test_config_errors.py."""
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    assert f"config key '{key}'" in str(raised.value)


def test_every_model_arch_is_a_config_choice() -> None:
    """The schema's train.arch enum names exactly the archs the model table defines (the
    Snakemake arch wildcard is built from that table; parity runs the archs in use)."""
    from n2v_repro.models.spec import ARCHS

    for arch in ARCHS:
        assert validate_config({"train": {"arch": arch}})["train"]["arch"] == arch
    with pytest.raises(ConfigError, match="arch"):
        validate_config({"train": {"arch": "rednet40"}})
    common = (REPO_ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'arch="|".join(ARCHS)' in common


@pytest.mark.parametrize("files", [(), ("test.yaml",), ("paper.yaml",)])
def test_typed_config_holds_every_key_of_the_validated_mapping(files) -> None:
    """Snakemake's `config` is rebuilt from the typed view: a key the dataclasses lack would
    silently vanish from it (and from every script that reads it)."""
    from n2v_repro.config import PipelineConfig

    merged = load_config(
        REPO_ROOT / "config" / "config.yaml", *(REPO_ROOT / "config" / f for f in files)
    )
    assert PipelineConfig.from_mapping(merged).as_dict() == merged


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    """run.sh reads the user's config files first: a typo is reported as file:line."""
    broken = tmp_path / "mine.yaml"
    broken.write_text("sigmas: [25]\ntrain:\n  epochs: [3\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(broken))}:\d+: YAML syntax error"):
        load_config(REPO_ROOT / "config" / "config.yaml", broken)
