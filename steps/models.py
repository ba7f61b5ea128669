"""`models` entry point: the registered model as people see it, and how MLflow's own CLI reaches it.

    python -m steps.models              # every version: aliases, promotion decision, checks, commit
    python -m steps.models --champion   # only the champion's version number (for scripts)
    python -m steps.models --exports    # `export` lines for MLflow's own CLI (make serve, make run)
    python -m steps.models --servable   # the champion's version, or one line if it cannot load here
    python -m steps.models --ui 5000    # the link to the runs view of `make ui`'s MLflow UI

`mlflow run . -e models` prints the table. The table and --champion first record a champion set
by hand since the tools last looked (steps/tracking/champion.py), so `make rollback` can return
to the version that served before it. `--exports` prints the environment that points
`mlflow run` and `mlflow models serve` at the store and registry the stages use (local SQLite,
DagsHub or any MLflow server; see steps/tracking/store.py), creating the local store on first use;
secrets appear as references to the variables that hold them, never as values. `--servable`
is what `make serve` asks first: a champion logged as pickles (before the model became code and
data) is refused in one line naming it and how to re-log it, where the pickle guard is off.
"""

from __future__ import annotations

import argparse
import os
import sys

import mlflow
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID

from steps.entry import cli
from steps.stage.config import Params, RegisterConfig
from steps.stage.secrets import shown
from steps.tracking import champion, loading, registry, runs, store


def run(cfg: RegisterConfig, champion_only: bool = False, servable: bool = False) -> str:
    """The registry table, or with `champion_only` the champion's version number; `servable`
    also refuses a champion that this environment's pickle guard would not load.

    A champion set by hand since the tools last looked is recorded first (tracking/champion.py).
    """
    champion.notice(cfg.model_name, by="models")
    if not (champion_only or servable):
        return registry.describe(cfg.model_name)
    current = champion.serving(cfg.model_name)
    if servable:
        uri = registry.model_uri(cfg.model_name, current.version)
        what = f"{cfg.model_name} version {current.version} (@{registry.CHAMPION_ALIAS})"
        loading.check_loadable(uri, what, current.version)
    return str(current.version)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("what to print (one at a time)")
    what = group.add_mutually_exclusive_group()
    what.add_argument("--champion", action="store_true", help="only the champion's version number")
    what.add_argument(
        "--exports",
        action="store_true",
        help="shell `export` lines that point MLflow's own CLI at this store and registry",
    )
    what.add_argument(
        "--ui", type=int, default=None, metavar="PORT",
        help="the link that opens the experiment's runs view in `make ui`'s MLflow UI on PORT",
    )  # fmt: skip
    what.add_argument(
        "--servable", action="store_true",
        help="the champion's version number, or one line if it cannot load here (make serve)",
    )  # fmt: skip


def _command(params: Params, cfg: RegisterConfig, args: argparse.Namespace) -> None:
    if args.exports:
        print(store.shell_exports(os.environ))
        return
    if args.ui is not None:
        # cli.main has called store.configure(), whose set_experiment exports the id.
        print(runs.ui_link(mlflow.get_tracking_uri(), MLFLOW_EXPERIMENT_ID.get(), args.ui))
        return
    if not (args.champion or args.servable):
        # cli.main has called store.configure(), whose set_experiment exports the id.
        print(
            f"tracking store {shown(mlflow.get_tracking_uri())},"
            f" experiment id {MLFLOW_EXPERIMENT_ID.get()}"
        )
    print(run(cfg, champion_only=args.champion, servable=args.servable))


def main(argv: list[str] | None = None) -> int:
    return cli.main("register", argv, _command, add_arguments, entry_point="models")


if __name__ == "__main__":
    sys.exit(main())
