#!/usr/bin/env python3
"""Ansible inventory (YAML) from a metalk8s lab inventory: the same nodes, addresses, SSH
user, key and known_hosts. Usage: inventory.py METALK8S_INVENTORY > hosts.yml"""
import sys

import yaml

with open(sys.argv[1]) as f:
    inv = yaml.safe_load(f)
ssh = inv["ssh"]
nodes = inv["nodes"]
bootstrap = next(n for n in nodes if "bootstrap" in n.get("roles", []))
hosts = {
    n["name"]: {"ansible_host": n["address"], "node_ip": n["controlPlaneIP"]}
    for n in nodes
}
out = {
    "all": {
        "hosts": hosts,
        "vars": {
            "ansible_user": ssh["user"],
            "ansible_port": ssh["port"],
            "ansible_ssh_private_key_file": ssh["identityFile"],
            "ansible_ssh_common_args": (
                f"-o UserKnownHostsFile={ssh['knownHostsFile']} -o StrictHostKeyChecking=yes"
                f" -o ConnectTimeout={ssh['connectTimeoutSeconds']}"
            ),
            "bootstrap_node": bootstrap["name"],
            "bootstrap_ip": bootstrap["controlPlaneIP"],
            "control_plane_cidr": inv["networks"]["controlPlane"][0],
        },
    }
}
yaml.safe_dump(out, sys.stdout, sort_keys=False)
