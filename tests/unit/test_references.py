"""References to other resources' attributes: loading, planning with unknowns, apply-time values."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.config import Config, load_config
from reconciler.errors import ReconcilerError
from reconciler.model import Action, Address, Change, Kind, LiveResource, Status, mask_sensitive
from reconciler.planner import LiveView, PlanOptions, plan_changes
from reconciler.references import UNKNOWN, Reference, display, parse_reference, substitute
from reconciler.state.model import ResourceState, StateDocument
from reconciler.unknowns import AppliedValues

HEAD = Address(Kind.INSTANCE, "head")
W0 = Address(Kind.INSTANCE, "worker", 0)
W1 = Address(Kind.INSTANCE, "worker", 1)

CLUSTER = """
instances:
  - name: head
    provider: shadeform
    cloud: lambdalabs
    region: us-east-1
    shade_instance_type: A6000
    envs:
      TOKEN: {value: "s3cr3t-token", sensitive: true}
  - name: worker
    count: 2
    provider: forward
    offering_id: spot_coff_1
    envs:
      MASTER_ADDR: "${instances.head.ip}"
      MASTER: "tcp://${instances.head.ip}:${instances.head.ssh_port}"
"""


def load(tmp_path: Path, text: str = CLUSTER) -> Config:
    path = tmp_path / "main.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, environ={})


def applied_state(config: Config, ips: dict[Address, str]) -> StateDocument:
    """State as an apply of `config` leaves it, with the head's values substituted in the workers."""
    doc = StateDocument(serial=4)
    for address, res in config.resources.items():
        attributes = dict(res.attributes)
        if "envs" in attributes:
            attributes["envs"] = {
                k: display(v).replace("${instances.head.ip}", ips[HEAD]).replace("${instances.head.ssh_port}", "22")
                for k, v in attributes["envs"].items()
            }
        doc.resources[str(address)] = ResourceState(
            provider=res.provider,
            kind=address.kind.value,
            id=f"id-{address.name}-{address.index}",
            attributes=mask_sensitive(attributes, res.sensitive, doc.lineage),
            depends_on=[str(d) for d in res.depends_on],
            hourly_price=1.0,
            computed={"ip": ips[address], "ssh_port": 22, "ssh_user": "ubuntu"},
        )
    return doc


def live_of(doc: StateDocument, ips: dict[Address, str]) -> LiveView:
    resources: dict[tuple[str, Kind], dict[str, LiveResource]] = {
        ("shadeform", Kind.INSTANCE): {},
        ("forward", Kind.INSTANCE): {},
    }
    for key, held in doc.resources.items():
        address = Address.parse(key)
        resources[(held.provider, address.kind)][held.id] = LiveResource(
            provider=held.provider,
            kind=address.kind,
            id=held.id,
            name=str(held.attributes["name"]),
            status=Status.ACTIVE,
            attributes=dict(held.attributes),
            computed={"ip": ips[address], "ssh_port": 22, "ssh_user": "ubuntu", "id": held.id},
        )
    return LiveView(resources=resources)


IPS = {HEAD: "10.0.0.1", W0: "10.0.0.2", W1: "10.0.0.3"}


def test_parse_reference_forms() -> None:
    plain = parse_reference("instances.head.ip")
    assert plain is not None and (plain.name, plain.index, plain.splat, plain.attribute) == ("head", None, False, "ip")
    indexed = parse_reference("instances.worker[1].ssh_port")
    assert indexed is not None and (indexed.index, indexed.attribute) == (1, "ssh_port")
    splat = parse_reference("instances.worker[*].ip")
    assert splat is not None and splat.splat and splat.text == "instances.worker[*].ip"
    assert parse_reference("var.gpu") is None
    assert parse_reference("env:HOME") is None


def test_a_reference_is_a_dependency_edge_and_stays_a_placeholder_until_planned(tmp_path: Path) -> None:
    config = load(tmp_path)
    worker = config.resources[W0]
    assert HEAD in worker.depends_on
    assert worker.references == ("instances.head.ip", "instances.head.ssh_port")
    assert display(worker.attributes["envs"]["MASTER_ADDR"]) == "${instances.head.ip}"
    assert "ip" in config.resources[HEAD].computed and "ssh_port" in config.resources[HEAD].computed


def test_first_plan_leaves_references_to_new_objects_unknown(tmp_path: Path) -> None:
    config = load(tmp_path)
    plan = plan_changes(config.resources, StateDocument(), LiveView())
    changes = {c.address: c for c in plan.changes}
    assert changes[W0].action is Action.CREATE
    assert set(changes[W0].unknown) == {"envs.MASTER_ADDR", "envs.MASTER"}
    assert "ip" in changes[HEAD].computed and not changes[HEAD].unknown


def test_references_to_an_unchanged_object_take_its_value_from_state(tmp_path: Path) -> None:
    config = load(tmp_path)
    doc = applied_state(config, IPS)
    plan = plan_changes(config.resources, doc, live_of(doc, IPS))
    assert not plan.has_changes, [(c.address, c.action, c.reasons) for c in plan.changes]
    worker = {c.address: c for c in plan.changes}[W1]
    assert worker.after is not None and worker.after["envs"]["MASTER"] == "tcp://10.0.0.1:22"
    assert worker.unknown == ()


def test_replacing_the_head_replaces_its_workers_and_says_why(tmp_path: Path) -> None:
    config = load(tmp_path)
    doc = applied_state(config, IPS)
    plan = plan_changes(config.resources, doc, live_of(doc, IPS), PlanOptions(replace=(HEAD,)))
    changes = {c.address: c for c in plan.changes}
    assert changes[HEAD].action is Action.REPLACE
    for worker in (W0, W1):
        change = changes[worker]
        assert change.action is Action.REPLACE
        assert "envs" in change.replace_paths
        assert any(
            "envs.MASTER_ADDR uses ${instances.head.ip}, known only after apply (instances.head is replaced)" in r
            for r in change.reasons
        ), change.reasons


def test_a_new_address_reported_live_for_the_head_replaces_the_workers(tmp_path: Path) -> None:
    config = load(tmp_path)
    doc = applied_state(config, IPS)
    moved = {**IPS, HEAD: "10.9.9.9"}
    plan = plan_changes(config.resources, doc, live_of(doc, moved))
    changes = {c.address: c for c in plan.changes}
    assert changes[HEAD].action is Action.NOOP
    assert changes[W0].action is Action.REPLACE and changes[W0].unknown == ()
    assert changes[W0].after is not None and changes[W0].after["envs"]["MASTER_ADDR"] == "10.9.9.9"


def test_a_splat_reference_lists_every_member(tmp_path: Path) -> None:
    text = CLUSTER.replace(
        "      TOKEN: {value: \"s3cr3t-token\", sensitive: true}",
        "      PEERS: \"${instances.worker[*].ip}\"",
    ).replace("      MASTER_ADDR: \"${instances.head.ip}\"\n      MASTER: \"tcp://${instances.head.ip}:${instances.head.ssh_port}\"\n", "")
    text = text.replace("    offering_id: spot_coff_1\n    envs:\n", "    offering_id: spot_coff_1\n")
    config = load(tmp_path, text)
    head = config.resources[HEAD]
    assert set(head.depends_on) == {W0, W1}
    doc = StateDocument()
    for worker in (W0, W1):
        doc.resources[str(worker)] = ResourceState(
            provider="forward", kind="instances", id=f"w{worker.index}", computed={"ip": IPS[worker]}
        )
    values = AppliedValues(doc, {})
    envs, unknown = substitute(head.attributes["envs"], lambda r: _read(values, r, (W0, W1)))
    assert unknown == ()
    assert envs["PEERS"] == '["10.0.0.2", "10.0.0.3"]'


def _read(values: AppliedValues, reference: object, members: tuple[Address, ...]) -> object:
    from reconciler.references import attribute_value

    return attribute_value(reference, {m: None for m in members}, values.read)  # type: ignore[arg-type]


def test_a_reference_to_a_sensitive_value_is_sensitive_where_it_lands(tmp_path: Path) -> None:
    text = CLUSTER.replace(
        '      MASTER_ADDR: "${instances.head.ip}"', '      COPY: "${instances.head.envs}"'
    )
    config = load(tmp_path, text)
    assert "envs.COPY" in config.resources[W0].sensitive
    assert "envs.MASTER" not in config.resources[W0].sensitive


def test_apply_fills_in_unknowns_from_the_ready_object_in_state(tmp_path: Path) -> None:
    config = load(tmp_path)
    plan = plan_changes(config.resources, StateDocument(), LiveView())
    worker = {c.address: c for c in plan.changes}[W0]
    doc = StateDocument()
    values = AppliedValues(doc, {c.address: c for c in plan.changes})
    with pytest.raises(ReconcilerError, match=r"\$\{instances.head.ip\}.* still not known"):
        values.resolve(worker)
    doc.resources[str(HEAD)] = ResourceState(
        provider="shadeform", kind="instances", id="h1", computed={"ip": "10.1.2.3", "ssh_port": 2222}
    )
    resolved = values.resolve(worker)
    assert resolved.unknown == ()
    assert resolved.after is not None
    assert resolved.after["envs"] == {"MASTER_ADDR": "10.1.2.3", "MASTER": "tcp://10.1.2.3:2222"}


def test_substitute_keeps_every_placeholder_of_a_string_with_an_unknown() -> None:
    config_value = {"a": "\ue000instances.h.ip\ue001:\ue000instances.h.ssh_port\ue001"}

    def lookup(reference: Reference) -> object:
        return UNKNOWN if reference.attribute == "ip" else 22

    value, unknown = substitute(config_value, lookup)
    assert unknown == ("a",) and value == config_value


SENSITIVE_URL = CLUSTER.replace(
    '      MASTER_ADDR: "${instances.head.ip}"',
    '      URL: {value: "http://${instances.head.ip}/?t=${var.token}", sensitive: true}',
).replace("instances:\n", "variables:\n  token: {default: tok-abcdef12, sensitive: true}\ninstances:\n", 1)


def saved_and_restored(config: Config, doc: StateDocument, live: LiveView) -> dict[Address, Change]:
    from reconciler.planfile import read_plan_file, restore_secrets, write_plan_file

    plan = plan_changes(config.resources, doc, live, PlanOptions(replace=(W1,)))
    path = Path(str(config.root)) / "plan.bin"
    write_plan_file(path, plan, config.name)
    assert "tok-abcdef12" not in path.read_text()
    loaded, name = read_plan_file(path)
    restored = restore_secrets(loaded, config.resources, config.name, name, doc)
    return {c.address: c for c in restored.changes}


def test_a_saved_plan_restores_a_sensitive_value_that_uses_a_known_reference(tmp_path: Path) -> None:
    config = load(tmp_path, SENSITIVE_URL)
    assert "envs.URL" in config.resources[W1].sensitive
    doc = applied_state(config, IPS)
    doc.resources[str(W1)].attributes["envs"]["URL"] = mask_sensitive(
        {"u": "http://10.0.0.1/?t=tok-abcdef12"}, ("u",), doc.lineage
    )["u"]
    worker = saved_and_restored(config, doc, live_of(doc, IPS))[W1]
    assert worker.action is Action.REPLACE and worker.after is not None
    assert worker.after["envs"]["URL"] == "http://10.0.0.1/?t=tok-abcdef12"


def test_a_saved_plan_keeps_a_sensitive_value_unknown_until_apply(tmp_path: Path) -> None:
    config = load(tmp_path, SENSITIVE_URL)
    worker = saved_and_restored(config, StateDocument(), LiveView())[W1]
    assert "envs.URL" in worker.unknown
    doc = StateDocument()
    doc.resources[str(HEAD)] = ResourceState(provider="shadeform", kind="instances", id="h", computed={"ip": "10.7.7.7", "ssh_port": 22})
    resolved = AppliedValues(doc, {}).resolve(worker)
    assert resolved.after is not None and resolved.after["envs"]["URL"] == "http://10.7.7.7/?t=tok-abcdef12"
