"""The reference implementations: names, titles, environments, and what they can train.

Nothing here imports a reference's library: the pipeline's own environments read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One reference implementation of N2V.

    `env_file` (envs/) pins its environment, which the pipeline builds as a venv; `python`
    is the interpreter version that environment needs; `module` is the adapter that runs
    inside it; `weights` are the weights its users predict with (CAREamics has no "best" for
    N2V: its CAREamist refuses one, so only the last weights are scored).
    """

    name: str
    title: str
    library: str
    version: str
    env_file: str
    python: str
    module: str
    imports: str
    weights: tuple[str, ...]


REFERENCES: dict[str, Reference] = {
    "juglab_n2v": Reference(
        name="juglab_n2v",
        title="juglab n2v 0.3.3 (TensorFlow)",
        library="n2v",
        version="0.3.3",
        env_file="envs/ref-juglab-n2v.yaml",
        # TensorFlow 2.15, the last with Keras 2 (csbdeep < 0.8 needs it), has no wheel for 3.12.
        python="3.11",
        module="n2v_repro.references.juglab",
        imports="n2v",
        weights=("last", "best"),
    ),
    "careamics": Reference(
        name="careamics",
        title="CAREamics 0.3.5",
        library="careamics",
        version="0.3.5",
        env_file="envs/ref-careamics.yaml",
        python="3.11",
        module="n2v_repro.references.careamics_lib",
        imports="careamics",
        weights=("last",),
    ),
}
REFERENCE_NAMES = tuple(REFERENCES)
REFERENCE_TITLES = {name: ref.title for name, ref in REFERENCES.items()}


def reference(name: str) -> Reference:
    """Return the reference `name`, or raise ValueError listing the known ones."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; expected one of {', '.join(REFERENCES)}")
    return REFERENCES[name]
