"""`wafer models`: the model zoo."""

from __future__ import annotations


def cmd_models(args) -> int:
    from ..frontend.zoo import ZOO

    print(f"{'name':<20} {'layers':>6} {'d_model':>7} {'heads':>5} {'d_ffn':>6} {'context':>7} {'params':>16}")
    for m in ZOO.values():
        print(f"{m.name:<20} {m.layers:>6} {m.d_model:>7} {m.heads:>5} {m.d_ffn:>6} {m.context:>7} "
              f"{m.param_count():>16,}")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("models", help="list the model zoo")
    s.set_defaults(fn=cmd_models)
