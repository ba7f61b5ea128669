"""`image` entry point: the champion's serving image with `mlflow models build-docker`, and the
images around it.

    python -m steps.image                           # <model>:<champion version> (make image)
    python -m steps.image --model-uri URI --tag T   # any model as any tag
    python -m steps.image --base-only               # only the base MLflow's Dockerfile starts
                                                    # FROM (make base-image)
    python -m steps.image --deployer                # k8s/deployer/Dockerfile (make deployer-image)

Every build first makes sure the engine has the base image python:<the model's Python>-slim:
present, pulled, or, where Docker Hub cannot be reached, a stand-in built from Debian's packages
that trusts this host's CAs (steps/rollout/base_image.py; k8s/README.md, "The serving image").
The champion is resolved to its version once, and that version is what is built and tagged.
"""

from __future__ import annotations

import argparse
import sys

from steps.entry import cli
from steps.rollout import base_image, docker, image
from steps.stage.config import ImageConfig, Params
from steps.stage.errors import ConfigError
from steps.tracking import champion, registry


def run(
    cfg: ImageConfig,
    model_name: str,
    *,
    model_uri: str | None = None,
    tag: str | None = None,
    base_only: bool = False,
    deployer: bool = False,
) -> image.Built | base_image.BaseImage:
    """Build what was asked for (the champion's serving image by default); return what the
    engine now has."""
    check_options(model_uri=model_uri, tag=tag, base_only=base_only, deployer=deployer)
    docker.check_engine()
    if base_only:
        return base_image.ensure(base_image.python_slim(), cfg)
    if deployer:
        return image.build_deployer_image(tag or cfg.deployer_tag, cfg)
    if model_uri is None:
        current = champion.serving(model_name)  # none: one line with the command making one
        model_uri = registry.model_uri(model_name, current.version)
        tag = tag or f"{model_name}:{current.version}"
    return image.build_serving_image(model_uri, tag, cfg)


def check_options(
    *, model_uri: str | None, tag: str | None, base_only: bool, deployer: bool
) -> None:
    """Refuse combinations that mean nothing, before touching the engine or the registry."""
    if base_only and (deployer or model_uri or tag):
        raise ConfigError("image parameters: --base-only goes alone")
    if deployer and model_uri:
        raise ConfigError("image parameters: --deployer builds no model (no --model-uri)")
    if model_uri is not None and not tag:
        raise ConfigError("image parameters: --model-uri needs --tag (the image's name)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to build (each also as `mlflow run -P name=value`)")
    cli.add_flag(group, "base_only", "only make sure the base image is there")
    cli.add_flag(group, "deployer", "build the deployer's image (k8s/deployer/Dockerfile)")
    group.add_argument(
        "--model-uri", "--model_uri", dest="model_uri", default=None, metavar="URI",
        help="build this model instead of the registry's champion (needs --tag)",
    )  # fmt: skip
    group.add_argument("--tag", default=None, help="the image's name (default: <model>:<version>)")


def _command(params: Params, cfg: ImageConfig, args: argparse.Namespace) -> None:
    built = run(
        cfg, params.register.model_name, model_uri=args.model_uri, tag=args.tag,
        base_only=args.base_only, deployer=args.deployer,
    )  # fmt: skip
    print(built.describe())


def main(argv: list[str] | None = None) -> int:
    return cli.main("image", argv, _command, add_arguments)


if __name__ == "__main__":
    sys.exit(main())
