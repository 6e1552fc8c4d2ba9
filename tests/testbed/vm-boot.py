#!/usr/bin/env python3
"""EC2 instances on a moto server that boot: a real sshd host per running instance.

For every running instance whose private IP is in NET.0/24, a host of fleet.sh appears at that
IP after --boot-delay seconds, authorizing the public key of the instance's key pair; when the
instance stops or is terminated, the host is removed. SIGTERM or SIGINT removes every host this
process started. Lets a test run VM -> SSH host chains end to end.

    vm-boot.py --endpoint URL --fleet-work DIR --fleet-id ID --net 10.219.0 [--boot-delay 0.5]
               [--kube-work DIR --kube-ca DIR --kube-token TOKEN]

With --kube-work, each booted host also serves a Kubernetes API (fake_kube_apiserver.py, a test
double) at its address, port 6443, inside its network namespace, its certificate signed by the CA
in --kube-ca and its token --kube-token; its kubeconfig is DIR/vmN/kubeconfig. VM -> SSH host ->
cluster chains run end to end that way.

Needs boto3 (tests/testbed/install.sh puts it in the testbed venv with moto).
"""
import argparse
import os
import signal
import subprocess
import sys
import time

import boto3

parser = argparse.ArgumentParser()
parser.add_argument("--endpoint", required=True)
parser.add_argument("--fleet-work", required=True)
parser.add_argument("--fleet-id", required=True)
parser.add_argument("--net", required=True, help="first three octets of the subnet, e.g. 10.219.0")
parser.add_argument("--boot-delay", type=float, default=0.5)
parser.add_argument("--region", default="us-east-1")
parser.add_argument("--kube-work")
parser.add_argument("--kube-ca")
parser.add_argument("--kube-token")
args = parser.parse_args()
KUBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_kube_apiserver.py")
clusters = {}  # fleet host name -> its API server process

FLEET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fleet.sh")
ENV = dict(os.environ, FLEET_WORK=args.fleet_work, FLEET_ID=args.fleet_id, FLEET_NET=args.net)
ec2 = boto3.client(
    "ec2",
    endpoint_url=args.endpoint,
    region_name=args.region,
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
hosts = {}  # instance id -> fleet host name
first_seen = {}  # instance id -> monotonic time it was first seen running


def fleet(*argv, key=""):
    env = dict(ENV, FLEET_KEY=key) if key else ENV
    return subprocess.run(["bash", FLEET, *argv], env=env, capture_output=True, text=True)


def serve_kube(name, ip):
    """The host's Kubernetes API, inside its network namespace."""
    work = os.path.join(args.kube_work, name)
    os.makedirs(work, exist_ok=True)
    log = open(os.path.join(work, "server.log"), "w")
    clusters[name] = subprocess.Popen(
        ["ip", "netns", "exec", f"{args.fleet_id}-{name}", sys.executable, KUBE, work, "--listen", f"{ip}:6443", "--ca", args.kube_ca, "--token", args.kube_token],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def halt(name):
    server = clusters.pop(name, None)
    if server:
        server.terminate()
        server.wait()
    fleet("remove", name)


def shutdown(*_):
    for name in list(hosts.values()):
        halt(name)
    sys.exit(0)


def running_instances():
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                ip = instance.get("PrivateIpAddress", "")
                if instance["State"]["Name"] == "running" and ip.startswith(args.net + "."):
                    yield instance, ip


def public_key(key_name):
    if not key_name:
        return ""
    pairs = ec2.describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)["KeyPairs"]
    return pairs[0].get("PublicKey", "") if pairs else ""


signal.signal(signal.SIGTERM, shutdown)
signal.signal(signal.SIGINT, shutdown)
while True:
    now = time.monotonic()
    live = set()
    for instance, ip in running_instances():
        iid = instance["InstanceId"]
        live.add(iid)
        first_seen.setdefault(iid, now)
        if iid in hosts or now - first_seen[iid] < args.boot_delay:
            continue
        name = "vm" + ip.rsplit(".", 1)[1]
        done = fleet("add", ip, name, key=public_key(instance.get("KeyName")))
        print(f"boot {iid} {ip} -> {name}: {(done.stdout or done.stderr).strip()}", flush=True)
        hosts[iid] = name
        if args.kube_work:
            serve_kube(name, ip)
    for iid in [i for i in hosts if i not in live]:
        halt(hosts.pop(iid))
        print(f"halt {iid}", flush=True)
    time.sleep(0.2)
