"""The pure blue/green planner: every transition, and that no failure can reach the live slot."""

from __future__ import annotations

import pytest

from steps.rollout.actions import (
    Analyse,
    BuildImage,
    CheckReady,
    ClusterState,
    PlanError,
    PointPreview,
    Policy,
    Record,
    RegistryState,
    RollSlot,
    ScaleDown,
    ScaleSlot,
    Slot,
    SmokeTest,
    SwitchLive,
    WaitReady,
    WatchLive,
)
from steps.rollout.plan import plan_deploy, plan_rollback, predict, serving

REPO = "localhost:5000/imdb-sentiment"
PLACEHOLDER = f"{REPO}:unset"


def image(version: int) -> str:
    return f"{REPO}:{version}"


def state(live="blue", preview="green", blue=None, green=None, ready=True) -> ClusterState:
    def slot(version):
        return Slot(image(version) if version else PLACEHOLDER, version, ready=ready)

    return ClusterState(
        live=live, preview=preview, slots={"blue": slot(blue), "green": slot(green)}
    )


def registry(champion, blue=None, green=None, live=None, held=None) -> RegistryState:
    aliases = {k: v for k, v in (("blue", blue), ("green", green)) if v is not None}
    return RegistryState(champion=champion, aliases=aliases, live_slot=live, held=held)


def deploy(cluster, reg, **kwargs):
    kwargs.setdefault("build", True)
    return plan_deploy(cluster, reg, kwargs.pop("image", image(reg.champion or 0)), **kwargs)


def test_first_deploy_rolls_the_idle_slot_and_switches():
    cluster = state()  # fresh manifests: both slots run the placeholder, live selects blue
    plan = deploy(cluster, registry(1))
    assert plan.kind == "first-deploy"
    assert plan.actions == (
        BuildImage(1, image(1)),
        RollSlot("green", 1, image(1), by_digest=True),  # to the digest the push reports
        WaitReady("green"),
        SmokeTest("green", 1),
        SwitchLive("blue", "green"),
        PointPreview("blue"),
        Record({"blue": None, "green": 1}, live="green", held=None),
    )
    after = predict(cluster, plan.actions)
    assert (after.live, after.preview, after.slots["green"].version) == ("green", "blue", 1)


def test_promote_to_a_new_version():
    cluster = state(live="green", preview="blue", blue=1, green=2)
    plan = deploy(cluster, registry(3, blue=1, green=2, live="green"))
    assert plan.kind == "promote"
    assert plan.reason == "champion is version 3; live slot green runs version 2"
    assert [type(a) for a in plan.actions] == [
        BuildImage,
        RollSlot,
        WaitReady,
        SmokeTest,
        SwitchLive,
        PointPreview,
        Record,
    ]
    assert plan.actions[1] == RollSlot("blue", 3, image(3), by_digest=True)
    assert plan.actions[1].describe() == (
        f"roll slot blue to {image(3)}@<digest of the push> (model version 3) at 1 pod"
    )
    assert plan.actions[4] == SwitchLive("green", "blue")
    assert plan.actions[-1] == Record({"green": 2, "blue": 3}, live="blue", held=None)
    assert serving(predict(cluster, plan.actions)) == "live slot blue serves version 3"


def test_prebuilt_image_skips_the_build():
    plan = deploy(state(blue=1), registry(2), build=False)
    assert not any(isinstance(a, BuildImage) for a in plan.actions)
    assert plan.actions[0] == RollSlot("green", 2, image(2))  # as given: nothing was pushed


def test_noop_when_already_live():
    cluster = state(blue=2, green=1)
    plan = deploy(cluster, registry(2, blue=2, green=1, live="blue"))
    assert (plan.kind, plan.actions) == ("noop", ())
    # A registry that lags behind the cluster is brought up to date, and nothing else.
    plan = deploy(cluster, registry(2))
    assert plan.kind == "noop"
    assert plan.actions == (Record({"blue": 2, "green": 1}, live="blue", held=None),)


def test_pinned_image_counts_only_when_the_slot_runs_exactly_it():
    cluster = state(blue=2)
    assert deploy(cluster, registry(2), image="other/registry:2", build=False).kind == "noop"
    plan = deploy(cluster, registry(2), image="other/registry:2", build=False, pinned=True)
    assert plan.kind == "promote"
    assert plan.actions[0] == RollSlot("green", 2, "other/registry:2")


def test_idle_slot_already_running_the_champion_is_not_rebuilt():
    plan = deploy(state(blue=1, green=2, preview=None), registry(2))
    assert plan.kind == "resume"
    assert plan.actions[:3] == (WaitReady("green"), PointPreview("green"), SmokeTest("green", 2))


def test_rollback_switches_at_once_and_holds_the_version():
    cluster = state(live="green", preview="blue", blue=1, green=2)
    plan = plan_rollback(cluster)
    assert plan.kind == "rollback"
    assert plan.actions == (
        CheckReady("blue"),
        SwitchLive("green", "blue"),
        PointPreview("green"),
        Record({"green": 2, "blue": 1}, live="blue", held=2),
    )
    after = predict(cluster, plan.actions)
    # With the champion still on version 2, deploy does not undo the rollback by itself...
    held = deploy(after, registry(2, blue=1, green=2, live="blue", held=2))
    assert (held.kind, held.actions) == ("held", ())
    assert "--force" in held.reason
    # ...unless forced: green still runs version 2, so no rebuild, no roll.
    forced = deploy(after, registry(2, held=2), force=True)
    assert forced.kind == "resume" and forced.actions[-1].held is None
    # A new champion lifts the hold.
    assert deploy(after, registry(3, held=2)).kind == "promote"
    # So does moving the champion back to the version now live (promote's rollback): a no-op
    # that only clears the hold in the registry.
    back = deploy(after, registry(1, blue=1, green=2, live="blue", held=2))
    assert back.kind == "noop"
    assert back.actions == (Record({"blue": 1, "green": 2}, live="blue", held=None),)


def test_rollback_needs_a_version_in_the_idle_slot():
    with pytest.raises(PlanError, match="nothing to roll back to: slot green has never run"):
        plan_rollback(state(blue=1))


def test_no_champion_is_an_error():
    with pytest.raises(PlanError, match="no 'champion' alias"):
        plan_deploy(state(blue=1), registry(None), "", build=True)


@pytest.mark.parametrize(
    ("failing", "why"),
    [
        (BuildImage, "image build failure"),
        (RollSlot, "patch rejected"),
        (WaitReady, "idle slot failing readiness"),
        (SmokeTest, "smoke test mismatch"),
    ],
)
def test_a_failure_before_the_switch_leaves_the_live_slot_untouched(failing, why):
    cluster = state(blue=1, green=None)
    plan = deploy(cluster, registry(2, blue=1, live="blue"))
    index = [type(a) for a in plan.actions].index(failing)
    done = plan.actions[:index]  # the executor stops at the failing step
    after = predict(cluster, done)
    assert after.live == "blue" and after.slots["blue"] == cluster.slots["blue"], why
    assert serving(after) == "live slot blue serves version 1"
    assert not any(isinstance(a, (SwitchLive, Record)) for a in done)
    # The next attempt plans the same rollout again: nothing was lost or half-recorded.
    again = deploy(after, registry(2, blue=1, live="blue"))
    assert again.actions[-3:] == plan.actions[-3:]
    if failing in (WaitReady, SmokeTest):  # the idle slot already has the image: no rebuild
        assert again.kind == "resume" and again.actions[0] == WaitReady("green")
    else:
        assert again.actions == plan.actions


def test_every_plan_tests_before_it_switches():
    cases = [
        (state(), registry(1)),
        (state(blue=1, green=2), registry(3)),
        (state(blue=1, green=2, preview=None), registry(2)),
    ]
    for cluster, reg in cases:
        plan = deploy(cluster, reg)
        kinds = [type(a) for a in plan.actions]
        smoke = kinds.index(SmokeTest)
        assert kinds.index(WaitReady) < smoke < kinds.index(SwitchLive)
        # The smoke test goes through the preview Service, which selects the idle slot by then.
        assert predict(cluster, plan.actions[:smoke]).preview == plan.actions[smoke].slot


def test_render_lists_the_steps():
    text = deploy(state(blue=1), registry(2)).render()
    assert (
        text.splitlines()[0]
        == "plan: promote: champion is version 2; live slot blue runs version 1"
    )
    assert "  5. [switch] switch the live Service from slot blue to slot green" in text
    assert (
        deploy(state(blue=2), registry(2, blue=2, live="blue")).render().endswith("(nothing to do)")
    )


FULL = Policy(preview_replicas=1, replay=True, watch=True, scale_down_delay=5.0)


def sized(cluster: ClusterState, **replicas: int) -> ClusterState:
    slots = {k: Slot(v.image, v.version, v.ready, replicas.get(k, v.replicas)) for k, v in
             cluster.slots.items()}  # fmt: skip
    return ClusterState(live=cluster.live, preview=cluster.preview, slots=slots)


def test_full_policy_previews_small_analyses_scales_up_switches_watches_then_scales_down():
    cluster = sized(state(blue=1), blue=3, green=3)
    plan = deploy(cluster, registry(2), build=False, policy=FULL)
    assert plan.actions == (
        RollSlot("green", 2, image(2), replicas=1),
        WaitReady("green"),
        SmokeTest("green", 2),
        Analyse("green", 2),
        ScaleSlot("green", 3, "slot blue's count"),
        WaitReady("green"),
        SwitchLive("blue", "green"),
        PointPreview("blue"),
        Record({"blue": 1, "green": 2}, live="green", held=None),
        WatchLive("green", 2, previous="blue"),
        ScaleDown("blue", 5.0),
    )
    after = predict(cluster, plan.actions)
    assert after.live == "green" and after.slots["blue"].replicas == 0
    assert after.slots["green"].replicas == 3
    # Until the analyses pass, the live slot serves what it served, at its full count.
    analysed = plan.actions.index(WatchLive("green", 2, previous="blue"))
    assert predict(cluster, plan.actions[:analysed]).slots["blue"].replicas == 3


def test_every_failure_before_the_switch_leaves_the_live_slot_serving_at_full_count():
    cluster = sized(state(blue=1), blue=2, green=2)
    plan = deploy(cluster, registry(2), build=False, policy=FULL)
    switch = plan.actions.index(SwitchLive("blue", "green"))
    assert plan.actions.index(Analyse("green", 2)) < switch
    for n in range(switch):
        before = predict(cluster, plan.actions[:n])
        assert before.live == "blue" and before.slots["blue"] == cluster.slots["blue"]


def test_a_rollout_into_a_scaled_down_slot_that_runs_the_champion_restores_pods_first():
    cluster = sized(state(blue=2, green=3), blue=2, green=0)
    plan = deploy(cluster, registry(3), build=False, policy=FULL)
    assert plan.kind == "resume"
    assert plan.actions[:2] == (
        ScaleSlot("green", 1, "it was scaled down: the preview count first", preview=True),
        WaitReady("green"),
    )
    assert ScaleSlot("green", 2, "slot blue's count") in plan.actions


def test_rollback_into_a_scaled_down_slot_scales_it_up_and_waits_and_says_so():
    cluster = sized(state(live="green", preview="blue", blue=1, green=2), blue=0, green=2)
    plan = plan_rollback(cluster)
    assert plan.actions[:3] == (
        ScaleSlot("blue", 2, "slot green's count"),
        WaitReady("blue"),
        SwitchLive("green", "blue"),
    )
    assert "scaled to zero after the last deploy" in plan.reason and "not instant" in plan.reason
    # Within the delay (still running) it is instant, as before.
    running = plan_rollback(sized(cluster, blue=2))
    assert running.actions[0] == CheckReady("blue")


def test_scale_down_never_touches_the_live_slot():
    cluster = sized(state(blue=1, green=2), blue=2, green=2)
    assert predict(cluster, [ScaleDown("blue", 0.0)]).slots["blue"].replicas == 2
