"""A CRI client in Python (grpcio, gRPC's C core) for berth's black-box tests.

Compiles the CRI proto at run time, opens a channel on TARGET with grpcio's default
options (so the HTTP/2 :authority is whatever the C core derives from the target: for
unix sockets, the percent-encoded socket path), and runs one pod through every verb a
kubelet needs. Prints one `ok <Verb>` line per call; on the first failure prints
`FAILED <Verb>: <code>: <details>`, tears down what it made, and exits 1.

usage: cri_client.py --proto cri.proto --target unix:///run/berth.sock --image IMAGE
                     --name NAME --log-dir DIR
"""

import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

# Every call's deadline: long enough for a pull from the test's local registry.
TIMEOUT = 120


def compile_proto(proto, out):
    include = os.path.dirname(os.path.abspath(proto))
    args = [
        "protoc",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        os.path.abspath(proto),
    ]
    if protoc.main(args) != 0:
        sys.exit(f"protoc failed on {proto}")
    sys.path.insert(0, out)
    name = os.path.splitext(os.path.basename(proto))[0]
    return importlib.import_module(f"{name}_pb2"), importlib.import_module(f"{name}_pb2_grpc")


class Failed(Exception):
    pass


def call(verb, method, request):
    try:
        answer = method(request, timeout=TIMEOUT)
    except grpc.RpcError as e:
        raise Failed(f"{verb}: {e.code().name}: {e.details()}") from None
    print(f"ok {verb}", flush=True)
    return answer


def check(condition, what):
    if not condition:
        raise Failed(what)


def run(pb, runtime, images, args):
    version = call("Version", runtime.Version, pb.VersionRequest())
    check(version.runtime_name == "berth", f"Version: runtime_name {version.runtime_name!r}")
    check(version.runtime_api_version == "v1", f"Version: api {version.runtime_api_version!r}")

    image = pb.ImageSpec(image=args.image)
    pulled = call("PullImage", images.PullImage, pb.PullImageRequest(image=image))
    check(pulled.image_ref, "PullImage: no image_ref")

    pod_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(
            name=args.name, uid=f"{args.name}-uid", namespace="default", attempt=0
        ),
        hostname=args.name,
        log_directory=args.log_dir,
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                # kubelet's default: a PID namespace per container.
                namespace_options=pb.NamespaceOption(pid=pb.CONTAINER)
            )
        ),
    )
    made = {}
    try:
        pod = call(
            "RunPodSandbox", runtime.RunPodSandbox, pb.RunPodSandboxRequest(config=pod_config)
        ).pod_sandbox_id
        made["pod"] = pod
        container_config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="sleeper", attempt=0),
            image=image,
            command=["sleep", "3600"],
            log_path="sleeper.log",
            linux=pb.LinuxContainerConfig(),
        )
        container = call(
            "CreateContainer",
            runtime.CreateContainer,
            pb.CreateContainerRequest(
                pod_sandbox_id=pod, config=container_config, sandbox_config=pod_config
            ),
        ).container_id
        made["container"] = container
        call("StartContainer", runtime.StartContainer, pb.StartContainerRequest(container_id=container))
        marker = f"hello from {args.name}"
        executed = call(
            "ExecSync",
            runtime.ExecSync,
            pb.ExecSyncRequest(container_id=container, cmd=["echo", marker], timeout=30),
        )
        check(executed.exit_code == 0, f"ExecSync: exit code {executed.exit_code}")
        check(
            executed.stdout == f"{marker}\n".encode(),
            f"ExecSync: stdout {executed.stdout!r}, stderr {executed.stderr!r}",
        )
    except BaseException:
        teardown(pb, runtime, made, raising=False)
        raise
    teardown(pb, runtime, made, raising=True)
    pods = call("ListPodSandbox", runtime.ListPodSandbox, pb.ListPodSandboxRequest())
    check(not pods.items, f"ListPodSandbox: pods left: {[p.id for p in pods.items]}")


def teardown(pb, runtime, made, raising):
    """Stops and removes what `run` made; after a failure, best effort and quiet."""
    steps = []
    if "container" in made:
        c = made["container"]
        steps += [
            ("StopContainer", runtime.StopContainer, pb.StopContainerRequest(container_id=c, timeout=2)),
            ("RemoveContainer", runtime.RemoveContainer, pb.RemoveContainerRequest(container_id=c)),
        ]
    if "pod" in made:
        p = made["pod"]
        steps += [
            ("StopPodSandbox", runtime.StopPodSandbox, pb.StopPodSandboxRequest(pod_sandbox_id=p)),
            ("RemovePodSandbox", runtime.RemovePodSandbox, pb.RemovePodSandboxRequest(pod_sandbox_id=p)),
        ]
    for verb, method, request in steps:
        try:
            call(verb, method, request)
        except Failed:
            if raising:
                raise


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proto", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--log-dir", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        pb, pb_grpc = compile_proto(args.proto, out)
        print(f"grpcio {grpc.__version__}, target {args.target}", flush=True)
        # Default channel options on purpose: no grpc.default_authority override.
        with grpc.insecure_channel(args.target) as channel:
            runtime = pb_grpc.RuntimeServiceStub(channel)
            images = pb_grpc.ImageServiceStub(channel)
            try:
                run(pb, runtime, images, args)
            except Failed as e:
                print(f"FAILED {e}", flush=True)
                sys.exit(1)
    print("all calls succeeded", flush=True)


if __name__ == "__main__":
    main()
