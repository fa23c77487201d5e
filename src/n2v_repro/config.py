"""Load and validate the pipeline configuration against its JSON schema.

The schema (`workflow/schemas/config.schema.yaml`) is the single source of defaults and
bounds, but for the recipes: those are defined in `config/config.yaml` only, the file users
read. Errors name the offending key as a dotted path so a user can find it in the YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import jsonschema
import yaml

from n2v_repro.errors import UserError
from n2v_repro.framework_site import framework_package

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
# Defines the built-in recipes (its recipe_book), read when a config does not load it itself.
DEFAULT_CONFIG_PATH = REPO_ROOT / "config" / "config.yaml"
# The methods (train.method) and the training target each compares the prediction with.
METHOD_TARGETS = {"n2v": "noisy", "n2v2": "noisy", "n2n": "noisy2", "n2c": "clean"}
METHODS = tuple(METHOD_TARGETS)
# The N2V2 variant of each U-Net that has one (`method: n2v2` trains it; models.spec builds it).
N2V2_VARIANT = {"n2v_unet": "n2v2_unet", "n2v_unet32": "n2v2_unet32"}
# The archs the reference implementations (`references`) can build: the CSBDeep U-Nets of N2V.
REFERENCE_ARCHS = ("n2v_unet", "n2v_unet32")


class ConfigError(UserError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


def _key_path(path: Iterable[Any]) -> str:
    parts: list[str] = []
    for item in path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<top level>"


def _fill_defaults(config: dict[str, Any], schema: Mapping[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in config and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if isinstance(config.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(config[key], sub)


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _coerce_strings(value: Any, schema: Mapping[str, Any]) -> Any:
    """Turn command-line strings into the numbers the schema asks for.

    `snakemake --config sigmas=[25]` hands the list items over as strings ('25'); Snakemake
    converts only top-level scalars. Strings that parse as the schema's integer, number or
    boolean type become that type; anything else is left for validation to report.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return {k: _coerce_strings(v, properties.get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce_strings(item, schema.get("items", {})) for item in value]
    if not isinstance(value, str):
        return value
    types = _types(schema)
    text = value.strip()
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None
    return value


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def validate_config(config: Mapping[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Return a copy of `config` with defaults filled in, or raise ConfigError naming the key."""
    schema = load_schema(schema_path)
    filled = _coerce_strings(copy.deepcopy(dict(config)), schema)
    _fill_defaults(filled, schema)
    if isinstance(filled.setdefault("recipe_book", {}), dict):
        # config/config.yaml's recipes stay defined; given entries merge over the entry of
        # the same name, as a --configfile merges over config.yaml.
        filled["recipe_book"] = merge_into(_default_recipe_book(), filled["recipe_book"])
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"config key '{_key_path(e.absolute_path)}': {e.message}" for e in errors]
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    if filled["seeds"] is None:
        filled["seeds"] = [filled["seed"]]
    _resolve_bmz(filled)
    _check_recipes(filled)
    _check_consistency(filled)
    return filled


def _resolve_bmz(config: dict[str, Any]) -> None:
    """bmz.weights: null means eval.weights; each must be evaluated (the README's PSNR)."""
    bmz = config["bmz"]
    if bmz["weights"] is None:
        bmz["weights"] = list(config["eval"]["weights"])
    missing = [w for w in bmz["weights"] if w not in config["eval"]["weights"]]
    if missing:
        raise ConfigError(
            f"config key 'bmz.weights': {missing} not in eval.weights {config['eval']['weights']}"
            " (a package quotes the BSD68 PSNR of its weights from the evaluation)"
        )


def _default_recipe_book() -> dict[str, Any]:
    with open(DEFAULT_CONFIG_PATH) as handle:
        return yaml.safe_load(handle)["recipe_book"]


def recipe_mapping(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """Return recipe `name` of a validated config: its train section, the book entry merged over.

    Method n2v2 trains the N2V2 variant of the arch (n2v_unet -> n2v2_unet, ...), so a recipe
    switches method without naming another arch.
    """
    recipe = merge_into(copy.deepcopy(dict(config["train"])), config["recipe_book"][name])
    if recipe.get("method") == "n2v2":
        recipe["arch"] = N2V2_VARIANT.get(recipe["arch"], recipe["arch"])
    return recipe


def _check_recipes(config: Mapping[str, Any]) -> None:
    """Every listed recipe is defined; a recipe may not choose the run's device."""
    problems: list[str] = []
    book = config["recipe_book"]
    for index, name in enumerate(config["recipes"]):
        if name not in book:
            problems.append(
                f"config key 'recipes[{index}]': no recipe {name!r} in recipe_book; "
                f"defined: {', '.join(sorted(book)) or 'none'}"
            )
    for name, entry in book.items():
        if "device" in entry:
            problems.append(
                f"config key 'recipe_book.{name}.device': the device is chosen for the whole "
                f"run in train.device, not per recipe"
            )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


# Every BSDS500 image is 321 x 481 pixels (portrait or landscape); BSD68 has 68 of them and
# BSD400 (train + test splits) 400. Bounds that depend on them are checked here, before any job.
BSDS500_IMAGE_SIDES = (321, 481)
BSD68_SIZE = 68
BSD400_SIZE = 400
# DnCNN's Train400: one 180 x 180 crop of each BSD400 image (config/data/train400_crops.txt).
TRAIN400_SIDE = 180


def _recipe_key(config: Mapping[str, Any], recipe: str, *keys: str) -> str:
    """Name the key a recipe's setting comes from: its book entry if set there, else train."""
    entry: Any = config["recipe_book"][recipe]
    for key in keys:
        if not isinstance(entry, Mapping) or key not in entry:
            return "train." + ".".join(keys)
        entry = entry[key]
    return f"recipe_book.{recipe}." + ".".join(keys)


def _tiles_per_image(sides: tuple[int, int], size: int) -> int:
    return (sides[0] // size) * (sides[1] // size)


def local_mirror(base: str) -> Path | None:
    """Return the folder of a local mirror (a path or a file:// URL); None for a remote one."""
    if base.startswith("file://"):
        return Path(unquote(urlparse(base).path))
    return None if "://" in base else Path(base)


def mirror_images(folder: Path) -> Path | None:
    """Return the folder under `folder` that holds the <split>/ folders, or None.

    A local mirror named one level too high, BSDS500's tarball root or its data/ folder, keeps
    them under data/images/ or images/.
    """
    for sub in ("", "data/images", "images"):
        if any((folder / sub / split).is_dir() for split in ("train", "val", "test")):
            return folder / sub
    return None


def _check_consistency(config: Mapping[str, Any]) -> None:
    """Rules that JSON schema cannot express across keys."""
    data = config["data"]
    problems: list[str] = []
    # A missing local folder would otherwise pass the dry run and fail only at the download.
    for index, base in enumerate(data["mirrors"]):
        folder = local_mirror(str(base))
        if folder is not None and not folder.is_dir():
            problems.append(
                f"config key 'data.mirrors[{index}]': {base!r} is not a folder; a local mirror "
                "must exist, laid out <split>/<id>.jpg (or give an http(s) URL)"
            )
        elif folder is not None and mirror_images(folder) is None:
            problems.append(
                f"config key 'data.mirrors[{index}]': {base!r} has no train/, val/ or test/ "
                "folder, nor data/images/ or images/ with them; a local mirror is laid out "
                "<split>/<id>.jpg"
            )
    n_bsd68 = data["bsd68_images"] if data["bsd68_images"] is not None else BSD68_SIZE
    if data["bsd68_images"] is not None and data["bsd68_images"] > BSD68_SIZE:
        problems.append(
            f"config key 'data.bsd68_images': {data['bsd68_images']} is more than the "
            f"{BSD68_SIZE} BSD68 images; allowed 2-{BSD68_SIZE} or null (all)"
        )
    elif data["n_valid"] >= n_bsd68:
        problems.append(
            f"config key 'data.n_valid': {data['n_valid']} leaves no test image out of the "
            f"{n_bsd68} BSD68 images in use (data.bsd68_images); allowed 1-{n_bsd68 - 1}"
        )
    if data["train_images"] is not None and data["train_images"] > BSD400_SIZE:
        problems.append(
            f"config key 'data.train_images': {data['train_images']} is more than the "
            f"{BSD400_SIZE} training images; allowed 1-{BSD400_SIZE} or null (all)"
        )
    size = data["patch_size"]
    if size > min(BSDS500_IMAGE_SIDES):
        problems.append(
            f"config key 'data.patch_size': {size} does not fit in a "
            f"{BSDS500_IMAGE_SIDES[0]}x{BSDS500_IMAGE_SIDES[1]} image; allowed multiples of 32 "
            f"up to {min(BSDS500_IMAGE_SIDES) // 32 * 32}"
        )
    else:
        n_train = data["train_images"] if data["train_images"] is not None else BSD400_SIZE
        for name in config["recipes"]:
            problems += _recipe_problems(config, name, recipe_mapping(config, name), n_train)
    for name in config["recipes"]:
        jittor = any(framework_package(f) == "jittor" for f in config["frameworks"])
        if recipe_mapping(config, name)["precision"] == "bf16" and jittor:
            problems.append(
                f"config key '{_recipe_key(config, name, 'precision')}': bf16 is PyTorch-only "
                "(Jittor 1.3.11 has no bfloat16 autocast) and frameworks includes jittor; "
                "allowed with jittor: fp32, tf32"
            )
    problems += _reference_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def reference_recipes(config: Mapping[str, Any]) -> list[str]:
    """Return the recipes of the run that the references train beside (method n2v)."""
    if not config["references"]:
        return []
    return [n for n in config["recipes"] if recipe_mapping(config, n)["method"] == "n2v"]


def _reference_problems(config: Mapping[str, Any]) -> list[str]:
    """Check that the references train the CSBDeep U-Net on Train400 beside an N2V recipe."""
    if not config["references"]:
        return []
    recipes = reference_recipes(config)
    if not recipes:
        return [
            f"config key 'references': {config['references']} train N2V beside an N2V recipe, "
            f"and no recipe of {config['recipes']} has method n2v; add one or set references: []"
        ]
    problems = []
    for name in recipes:
        recipe = recipe_mapping(config, name)
        if recipe["arch"] not in REFERENCE_ARCHS:
            problems.append(
                f"config key '{_recipe_key(config, name, 'arch')}': the references build the "
                f"CSBDeep U-Net only; recipe {name!r} has {recipe['arch']!r}; allowed with "
                f"references: {', '.join(REFERENCE_ARCHS)}"
            )
        if recipe["train_set"] != "train400":
            problems.append(
                f"config key '{_recipe_key(config, name, 'train_set')}': the references stack "
                f"their training images, which must be of one size; recipe {name!r} has "
                f"{recipe['train_set']!r}; allowed with references: train400"
            )
    return problems


def _recipe_problems(
    config: Mapping[str, Any], name: str, recipe: Mapping[str, Any], n_train: int
) -> list[str]:
    """Bounds of one recipe that depend on the data: held-out images, crops, tiles."""
    data, size = config["data"], config["data"]["patch_size"]
    problems = []
    crops = recipe["train_set"] == "train400"
    sides = (TRAIN400_SIDE, TRAIN400_SIDE) if crops else BSDS500_IMAGE_SIDES
    if crops and size > TRAIN400_SIDE:
        problems.append(
            f"config key 'data.patch_size': {size} does not fit in the {TRAIN400_SIDE}x"
            f"{TRAIN400_SIDE} Train400 crops of recipe {name!r} "
            f"({_recipe_key(config, name, 'train_set')}); allowed up to {TRAIN400_SIDE // 32 * 32}"
        )
        return problems
    scheme = recipe["validation"]["scheme"]
    method = recipe["method"]
    if method == "n2v2" and recipe["arch"] not in N2V2_VARIANT.values():
        problems.append(
            f"config key '{_recipe_key(config, name, 'arch')}': method n2v2 (recipe {name!r}) "
            f"needs a U-Net with an N2V2 variant; allowed: {', '.join(N2V2_VARIANT)}"
        )
    if method in ("n2n", "n2c") and scheme != "heldout_train":
        problems.append(
            f"config key '{_recipe_key(config, name, 'validation', 'scheme')}': method {method} "
            f"(recipe {name!r}) validates on held-out training images; allowed: heldout_train"
        )
    if scheme == "heldout_train":
        held_out = recipe["validation"]["heldout_images"]
        if held_out >= n_train:
            key = _recipe_key(config, name, "validation", "heldout_images")
            problems.append(
                f"config key '{key}': holding out {held_out} of the {n_train} training images "
                f"(data.train_images) leaves none to train recipe {name!r} on; "
                f"allowed 1-{n_train - 1}"
            )
            return problems
        available, images = held_out * _tiles_per_image(sides, size), f"{held_out} held-out"
    else:
        n_bsd68 = data["bsd68_images"] if data["bsd68_images"] is not None else BSD68_SIZE
        n_valid = min(data["n_valid"], n_bsd68)
        available = n_valid * _tiles_per_image(BSDS500_IMAGE_SIDES, size)
        images = f"{n_valid} BSD68 validation"
    tiles = recipe["valid_tiles"]
    if tiles is not None and tiles > available:
        problems.append(
            f"config key '{_recipe_key(config, name, 'valid_tiles')}': {tiles} is more than the "
            f"{available} tiles of {size}x{size} in the {images} images of recipe {name!r}; "
            f"allowed 1-{available} or null (all)"
        )
    return problems


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Merge YAML files left to right (later keys win, dicts merge) and validate the result."""
    merged: dict[str, Any] = {}
    for path in paths:
        with open(path) as handle:
            try:
                content = yaml.safe_load(handle) or {}
            except yaml.YAMLError as error:
                raise ConfigError(_yaml_problem(path, error)) from None
        if not isinstance(content, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {content!r}")
        merge_into(merged, content)
    return validate_config(merged)


def _yaml_problem(path: str | Path, error: yaml.YAMLError) -> str:
    """`file:line: what is wrong` for a YAML syntax error."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{where}: YAML syntax error: {problem}"


def merge_into(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict update, the way Snakemake merges --configfile over configfile:."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


# --- typed configuration -------------------------------------------------------------------
# The validated mapping is turned once into frozen dataclasses that mirror the schema's
# sections; rules and scripts read attributes. Field names equal the schema's keys, so
# `as_dict` gives back the mapping Snakemake holds.


T = typing.TypeVar("T")


@dataclass(frozen=True)
class MaskingConfig:
    kind: str
    percentage: float
    radius: int


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float
    betas: tuple[float, float]
    eps: float
    semantics: str


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str
    step_epochs: int
    factor: float
    patience: int


@dataclass(frozen=True)
class ValidationConfig:
    scheme: str
    heldout_images: int

    @property
    def tag(self) -> str:
        """Name of the validation data set this scheme uses (a path component of its patches)."""
        if self.scheme == "heldout_train":
            return f"heldout{self.heldout_images}"
        return self.scheme


@dataclass(frozen=True)
class TrainConfig:
    """One recipe's training settings (the train section, or a recipe_book entry merged over it)."""

    method: str
    arch: str
    epochs: int
    steps_per_epoch: int
    batch_size: int
    augment: bool
    masking: MaskingConfig
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    valid_tiles: int | None
    valid_epoch_tiles: int | None
    device: str
    precision: str
    train_set: str
    validation: ValidationConfig
    init: str

    @property
    def target(self) -> str:
        """What the loss compares the prediction with (noisy, noisy2 or clean).

        noisy: the input's own pixels (n2v, n2v2); noisy2: a second noise realisation (n2n);
        clean: the clean image (n2c).
        """
        return METHOD_TARGETS[self.method]

    @property
    def data_tag(self) -> str:
        """Name of the training + validation data this recipe reads (its patch folder)."""
        base = f"{self.train_set}_{self.validation.tag}"
        return base if self.target == "noisy" else f"{base}_{self.target}"


@dataclass(frozen=True)
class DownloadConfig:
    connect_timeout_s: float
    read_timeout_s: float
    connections: int
    mirror_failures: int


@dataclass(frozen=True)
class RecipeConfig:
    """A named recipe: what one row group of the results table was trained with."""

    name: str
    train: TrainConfig


@dataclass(frozen=True)
class DataConfig:
    mirrors: tuple[str, ...]
    download: DownloadConfig
    manifest: str
    bsd68_ids: str
    bsd68_pixels: str | None
    n_valid: int
    train_images: int | None
    bsd68_images: int | None
    patch_size: int
    train400_crops: str


@dataclass(frozen=True)
class EvalConfig:
    weights: tuple[str, ...]
    tta: bool
    figure_images: int


@dataclass(frozen=True)
class ParityConfig:
    batch_size: int
    steps: int
    tolerance: float


@dataclass(frozen=True)
class BmzConfig:
    export: bool
    weights: tuple[str, ...]
    authors: tuple[dict[str, str], ...]


@dataclass(frozen=True)
class PipelineConfig:
    seed: int
    seeds: tuple[int, ...]
    frameworks: tuple[str, ...]
    sigmas: tuple[int, ...]
    recipes: tuple[str, ...]
    recipe_book: dict[str, Any]
    baselines: tuple[str, ...]
    references: tuple[str, ...]
    reference_envs: str
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig
    parity: ParityConfig
    bmz: BmzConfig

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> PipelineConfig:
        """Validate `config` (schema and cross-key checks) and build the typed view."""
        return from_plain(cls, validate_config(config))

    def recipe(self, name: str) -> RecipeConfig:
        """Return the recipe `name` of recipe_book, merged over the train section."""
        if name not in self.recipe_book:
            defined = ", ".join(sorted(self.recipe_book))
            raise KeyError(f"no recipe {name!r} in recipe_book; defined: {defined}")
        sections = {"train": plain(self.train), "recipe_book": self.recipe_book}
        mapping = recipe_mapping(sections, name)
        return RecipeConfig(name, from_plain(TrainConfig, mapping))

    @property
    def reference_recipes(self) -> tuple[str, ...]:
        """The recipes the references train beside (none without `references`)."""
        return tuple(reference_recipes(plain(self)))

    @property
    def run_recipes(self) -> tuple[RecipeConfig, ...]:
        """The recipes this run trains, in the order of `recipes`."""
        return tuple(self.recipe(name) for name in self.recipes)

    def as_dict(self) -> dict[str, Any]:
        """Return the plain mapping (lists for tuples), e.g. for Snakemake's `config`."""
        return plain(self)


def from_plain(cls: type[T], values: Mapping[str, Any]) -> T:
    """Build the config dataclass `cls` (a section or the whole) from its plain mapping.

    Rules hand sections to scripts as plain mappings (Snakemake pickles params, and the
    per-rule environments import nothing from the package before the script runs).
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        value, hint = values[field.name], hints[field.name]
        if dataclasses.is_dataclass(hint):
            value = from_plain(hint, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    return cls(**kwargs)


def plain(section: Any) -> dict[str, Any]:
    """Return the plain mapping of a config dataclass, as rules hand it to scripts."""
    return _plain(dataclasses.asdict(section))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
