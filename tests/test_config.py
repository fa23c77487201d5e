"""Config loading: defaults from the schema, merging, key-naming errors, command-line strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from n2v_repro.config import ConfigError, load_config, validate_config

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
    assert config["train"]["epochs"] == 2 and config["train"]["arch"] == "n2n_unet"
    assert config["data"]["mirrors"]  # kept from config.yaml


def test_paper_config_is_the_reference_recipe() -> None:
    config = load_config(REPO_ROOT / "config" / "config.yaml", REPO_ROOT / "config" / "paper.yaml")
    train = config["train"]
    assert train["arch"] == "n2v_unet" and train["batch_size"] == 128
    assert train["optimizer"]["lr"] == 4e-4 and train["optimizer"]["eps"] == 1e-7
    assert train["schedule"]["kind"] == "plateau"


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
        ({"sigmas": [-5]}, "sigmas[0]"),
        ({"train": {"optimizer": {"lr": "fast"}}}, "train.optimizer.lr"),
        ({"frameworks": ["tensorflow"]}, "frameworks[0]"),
        ({"data": {"bsd68_images": 4, "n_valid": 4}}, "data.n_valid"),
    ],
)
def test_bad_values_name_the_key(config: dict, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    assert f"config key '{key}'" in str(raised.value)


def test_every_model_arch_is_a_config_choice() -> None:
    """The schema's train.arch enum names exactly the archs the model table defines (the
    Snakemake arch wildcard and the parity list are built from that table)."""
    from n2v_repro.models.spec import ARCHS

    for arch in ARCHS:
        assert validate_config({"train": {"arch": arch}})["train"]["arch"] == arch
    with pytest.raises(ConfigError, match="arch"):
        validate_config({"train": {"arch": "rednet40"}})
    common = (REPO_ROOT / "workflow" / "rules" / "common.smk").read_text()
    assert 'arch="|".join(ARCHS)' in common
    assert "PARITY_ARCHS = list(ARCHS)" in common


@pytest.mark.parametrize("files", [(), ("test.yaml",), ("paper.yaml",)])
def test_typed_config_holds_every_key_of_the_validated_mapping(files) -> None:
    """Snakemake's `config` is rebuilt from the typed view: a key the dataclasses lack would
    silently vanish from it (and from every script that reads it)."""
    from n2v_repro.config import PipelineConfig

    merged = load_config(
        REPO_ROOT / "config" / "config.yaml", *(REPO_ROOT / "config" / f for f in files)
    )
    assert PipelineConfig.from_mapping(merged).as_dict() == merged
