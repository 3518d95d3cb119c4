"""The committed Konnectivity stubs are exactly what `./dev protos` makes from the committed proto."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import gateway_apiserver.proxy.konnectivity as konnectivity_package
from gateway_apiserver.proxy.konnectivity import konnectivity_pb2 as pb

PACKAGE = Path(konnectivity_package.__file__).parent
GENERATED = ("konnectivity_pb2.py", "konnectivity_pb2.pyi")


def test_the_committed_stubs_match_a_fresh_generation_from_the_proto(tmp_path: Path) -> None:
    shutil.copy(PACKAGE / "konnectivity.proto", tmp_path)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.", "konnectivity.proto"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=60,
    )
    for name in GENERATED:
        assert (tmp_path / name).read_text() == (PACKAGE / name).read_text(), f"{name} is stale: run ./dev protos"


def test_the_services_have_the_method_paths_the_real_proxy_server_serves() -> None:
    services = {s.name: [m.name for m in s.methods] for s in pb.DESCRIPTOR.services_by_name.values()}
    assert services == {"ProxyService": ["Proxy"], "AgentService": ["Connect"]}
    assert pb.DESCRIPTOR.package == ""  # so the paths are /ProxyService/Proxy and /AgentService/Connect


def test_packets_carry_the_field_numbers_of_the_real_protocol() -> None:
    packet_fields = {f.name: f.number for f in pb.Packet.DESCRIPTOR.fields}
    assert packet_fields == {
        "type": 1,
        "dialRequest": 2,
        "dialResponse": 3,
        "data": 4,
        "closeRequest": 5,
        "closeResponse": 6,
        "closeDial": 7,
        "drain": 8,
    }
    assert {v.name: v.number for v in pb.PacketType.DESCRIPTOR.values} == {
        "DIAL_REQ": 0,
        "DIAL_RSP": 1,
        "CLOSE_REQ": 2,
        "CLOSE_RSP": 3,
        "DATA": 4,
        "DIAL_CLS": 5,
        "DRAIN": 6,
    }
    dial = pb.Packet(type=pb.DIAL_REQ, dialRequest=pb.DialRequest(protocol="tcp", address="cluster-a:443", random=7))
    # Hand-checked protobuf encoding: field 2 (dialRequest) holds protocol (1), address (2), random (3).
    assert dial.SerializeToString() == b"\x12\x16\n\x03tcp\x12\rcluster-a:443\x18\x07"
    data = pb.Packet(type=pb.DATA, data=pb.Data(connectID=3, data=b"hi"))
    assert pb.Packet.FromString(data.SerializeToString()) == data
