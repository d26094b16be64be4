"""Check Kubernetes manifests offline, strictly (unknown fields are errors), before any cluster sees them.

    python launchers/k8s_schema.py manifests.yaml [...]     # (- reads standard input)

prints one line per manifest (ok, or each error) and exits with status 1 if any has an error.

Core kinds (Service, Job, ...) go to Kubernetes 1.37's own strict OpenAPI schemas, as shipped by the
kubernetes-validate package. A Kubeflow PyTorchJob goes to launchers/schemas/pytorchjob-kubeflow.org-v1.json,
generated from the API models of the Kubeflow Training SDK (kubeflow-training 1.9.4, the operator's v1 API;
`--regenerate` writes it again from the installed SDK), and each of its pod templates to Kubernetes' schema.
The checks are structural: types, required and unknown fields; not enums, CEL rules or admission webhooks.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from importlib import metadata
from pathlib import Path

import yaml

KUBERNETES = "1.37"
SCHEMA = Path(__file__).parent / "schemas" / "pytorchjob-kubeflow.org-v1.json"
SDK = "kubeflow-training"
_SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
            "float": {"type": "number"}, "datetime": {"type": "string"}, "object": {},
            "Quantity": {"type": ["string", "number"]}}  # fmt: skip


def _models(sdk_models: Path) -> dict[str, tuple[dict, dict, list[str]]]:
    """class name -> (openapi_types, attribute_map, required attributes), read from the SDK's generated
    model files without importing them (the SDK's client needs packages olmo_fn does not)."""
    out = {}
    for path in sorted(sdk_models.glob("kubeflow_org_v1_*.py")):
        for cls in (n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)):
            tables = {t.id: ast.literal_eval(a.value) for a in cls.body if isinstance(a, ast.Assign)
                      for t in a.targets if isinstance(t, ast.Name)}  # fmt: skip
            init = next(f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
            required = [s.targets[0].attr for s in init.body if isinstance(s, ast.Assign)
                        and isinstance(s.targets[0], ast.Attribute) and s.targets[0].attr in tables["openapi_types"]]  # fmt: skip
            out[cls.name] = (tables["openapi_types"], tables["attribute_map"], required)
    return out


def _type(name: str) -> dict:
    if name in _SCALARS:
        return dict(_SCALARS[name])
    if match := re.fullmatch(r"dict\(str, (.+)\)", name):
        return {"type": "object", "additionalProperties": _type(match.group(1))}
    if match := re.fullmatch(r"list\[(.+)\]", name):
        return {"type": "array", "items": _type(match.group(1))}
    if name.startswith("KubeflowOrgV1"):
        return {"$ref": f"#/$defs/{name}"}
    return {
        "type": "object",
        "description": f"Kubernetes {name}",
    }  # core types: checked by Kubernetes' schema


def generate() -> dict:
    """The strict JSON schema of a PyTorchJob from the installed Kubeflow Training SDK's models."""
    dist = metadata.distribution(SDK)
    models = _models(Path(str(dist.locate_file("kubeflow/training/models"))))
    defs = {}
    for name, (types, keys, required) in models.items():
        defs[name] = {
            "type": "object",
            "properties": {keys[attr]: _type(kind) for attr, kind in types.items()},
            "required": [keys[attr] for attr in required],
            "additionalProperties": False,
        }
    reachable, todo = set(), ["KubeflowOrgV1PyTorchJob"]
    while todo:  # only the models a PyTorchJob uses
        name = todo.pop()
        reachable.add(name)
        todo += [r for r in re.findall(r"#/\$defs/(\w+)", json.dumps(defs[name])) if r not in reachable]
    defs = {name: defs[name] for name in sorted(reachable)}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": f"PyTorchJob (kubeflow.org/v1) from the API models of {SDK} {dist.version}",
        "$ref": "#/$defs/KubeflowOrgV1PyTorchJob",
        "$defs": defs,
    }


def check(doc: dict) -> list[str]:
    """The errors of one manifest ("path: message"); [] when it passes."""
    import kubernetes_validate

    if (doc.get("apiVersion"), doc.get("kind")) == ("kubeflow.org/v1", "PyTorchJob"):
        import jsonschema

        validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]
        for role, replica in doc.get("spec", {}).get("pytorchReplicaSpecs", {}).items():
            pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role.lower()},
                   "template": replica.get("template", {})}  # fmt: skip
            errors += [f"spec.pytorchReplicaSpecs.{role}.{e}" for e in check(pod)]
        return errors
    try:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    return []


def main(argv: list[str]) -> int:
    if argv == ["--regenerate"]:
        SCHEMA.write_text(json.dumps(generate(), indent=1) + "\n")
        print(f"wrote {SCHEMA}")
        return 0
    failed = False
    for path in argv:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        for doc in filter(None, yaml.safe_load_all(text)):
            name = f"{path}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            errors = check(doc)
            for error in errors:
                print(f"error: {name}: {error[:300]}")
            if not errors:
                print(f"ok: {name}")
            failed |= bool(errors)
    return int(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
