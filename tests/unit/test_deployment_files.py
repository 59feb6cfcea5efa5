"""docker-compose.yml and k8s/ give every process the files it reads: the artifact store to all that
store or load models, the training data root to the training API (which checks a file) and the workers
(which read it)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_READERS = ("registry", "training", "worker")
DATA_READERS = ("training", "worker")
ROOTS = (("MODELYARD_ARTIFACT_ROOT", ARTIFACT_READERS), ("MODELYARD_DATA_ROOT", DATA_READERS))


def test_compose_mounts_the_artifact_and_data_roots_where_they_are_read():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for variable, readers in ROOTS:
        for name in readers:
            env = services[name]["environment"]
            mounts = {volume.split(":")[1] for volume in services[name].get("volumes", [])}
            assert env.get(variable, "").startswith("/"), f"{name} has no absolute {variable}"
            assert env[variable] in mounts, f"{name} does not mount {variable} ({env[variable]})"


def test_k8s_mounts_the_artifact_and_data_roots_from_shared_claims_where_they_are_read():
    documents = [doc for path in sorted((ROOT / "k8s").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
                 if doc]
    config = next(doc["data"] for doc in documents if doc["kind"] == "ConfigMap"
                  and doc["metadata"]["name"] == "modelyard-config")
    claims = {doc["metadata"]["name"]: doc["spec"]["accessModes"] for doc in documents
              if doc["kind"] == "PersistentVolumeClaim"}
    pods = {doc["metadata"]["name"]: doc["spec"]["template"]["spec"] for doc in documents if doc["kind"] == "Deployment"}
    for variable, readers in ROOTS:
        for name in readers:
            pod = pods[name]
            volumes = {volume["name"]: volume for volume in pod["volumes"]}
            mounted = {mount["mountPath"]: mount["name"] for container in pod["containers"]
                       for mount in container.get("volumeMounts", [])}
            assert config[variable] in mounted, f"{name} does not mount {variable} ({config[variable]})"
            claim = volumes[mounted[config[variable]]]["persistentVolumeClaim"]["claimName"]
            # Several pods on several nodes read and write the same files.
            assert claims[claim] == ["ReadWriteMany"], f"{claim} must be ReadWriteMany"
