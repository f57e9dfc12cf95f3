"""Deployment files under infra/ agree with the code they deploy.

Offline and fast: no Docker, no Kubernetes, no network. Every manifest is
parsed; every ``folio ...`` command line is parsed by the real click CLI;
every ``FOLIO_<SECTION>__<FIELD>`` variable and every embedded Folio config is
validated by ``pipeline.config.load_config``; the Dockerfile's files, imports
and packages are checked against the repository and pyproject.toml; the IAM
policy is checked against the S3 calls the code makes.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from pipeline.cli import main as folio_cli
from pipeline.config import FolioConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
POOL = "folio-k8s"

EXPECTED_FILES = [
    "docker/Dockerfile",
    "kuberay/raycluster.yaml",
    "kuberay/rayjob.yaml",
    "kuberay/configmap.yaml",
    "prefect/work-pool.json",
    "prefect/work-pool.process.json",
    "prefect/worker.yaml",
    "compose.yaml",
    "iam/folio-policy.json",
]


# --------------------------------------------------------------------------- helpers


def _manifest_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def _load(path: Path) -> list:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [json.loads(text)]
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _all_docs() -> list[tuple[Path, object]]:
    return [(path, doc) for path in _manifest_files() for doc in _load(path)]


def _docs_of_kind(kind: str) -> list[dict]:
    return [d for _, d in _all_docs() if isinstance(d, dict) and d.get("kind") == kind]


def _one(kind: str) -> dict:
    docs = _docs_of_kind(kind)
    assert len(docs) == 1, f"expected one {kind} in infra/, found {len(docs)}"
    return docs[0]


def _strings(node):
    """Every string in a parsed document, and every list of strings (an argv)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        if node and all(isinstance(x, str) for x in node):
            yield node
        for value in node:
            yield from _strings(value)


def _containers(pod_template: dict) -> list[dict]:
    return pod_template["spec"]["containers"]


def _env(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


_SHELL_STOP = {"&&", "||", "|", ";", ">", ">>", "<", "&", ")", "(", "2>&1", "2>"}
#: Words after which `folio` is in command position: `then folio`, `ray job submit -- folio`,
#: `docker compose run --rm folio` (the compose service whose entrypoint is folio).
_COMMAND_AFTER = {"then", "do", "else", "--", "--rm", "exec"}


def _shell_words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # prose with an apostrophe, not a command
        return line.split()


def _folio_argvs(words: list[str]) -> list[list[str]]:
    """The argument lists that follow each ``folio`` word, up to a shell operator."""
    out = []
    for i, word in enumerate(words):
        if word != "folio" or i + 1 >= len(words):
            continue
        if i > 0 and words[i - 1] not in _SHELL_STOP | _COMMAND_AFTER:  # e.g. `-n folio`: a name, not a command
            continue
        argv = []
        for w in words[i + 1 :]:
            if w in _SHELL_STOP or w.startswith((">", "2>")):
                break
            argv.append(w)
        if argv:
            out.append(argv)
    return out


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        current += " " + line[:-1] if line.endswith("\\") else " " + line
        if not line.endswith("\\"):
            instr, _, args = current.strip().partition(" ")
            out.append((instr.upper(), args.strip()))
            current = ""
    return out


def _dockerfile_args() -> dict[str, str]:
    """Build args with their defaults (the last declaration wins)."""
    args = {}
    for instr, rest in _dockerfile_instructions():
        if instr == "ARG":
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
    return args


def _expand(text: str, env: dict[str, str]) -> str:
    """Shell parameter expansion for the forms the Dockerfile uses: $V, ${V}, ${V:-w}, ${V:+w}."""

    def brace(m: re.Match) -> str:
        name, op, word = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name, "")
        if op == ":+":
            return _expand(word, env) if value else ""
        if op == ":-":
            return value or _expand(word, env)
        return value

    text = re.sub(r"\$\{(\w+)(?:(:[+-])([^}]*))?\}", brace, text)
    return re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), text)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _req_name(req: str) -> str:
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1)
    return re.sub(r"[-_.]+", "-", name).lower()


def _run_commands() -> list[list[str]]:
    """Each Dockerfile RUN as shell words, build args expanded to their defaults."""
    args = _dockerfile_args()
    return [_shell_words(_expand(rest, args)) for instr, rest in _dockerfile_instructions() if instr == "RUN"]


def _python_c_snippets() -> list[str]:
    snippets = []
    for words in _run_commands():
        for i, word in enumerate(words[:-2]):
            if word in ("python", "python3") and words[i + 1] == "-c":
                snippets.append(words[i + 2])
    return snippets


def _raycluster() -> dict:
    return _one("RayCluster")


def _gpu_group(cluster: dict) -> dict:
    groups = [
        g for g in cluster["spec"].get("workerGroupSpecs", [])
        if any("nvidia.com/gpu" in c.get("resources", {}).get("limits", {}) for c in _containers(g["template"]))
    ]
    assert groups, "the RayCluster has no worker group with an nvidia.com/gpu limit"
    return groups[0]


def _configmap_configs() -> dict[str, str]:
    cm = _one("ConfigMap")
    return {k: v for k, v in cm.get("data", {}).items() if k.endswith((".yaml", ".yml"))}


def _cpus(quantity) -> float:
    q = str(quantity)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


# --------------------------------------------------------------------------- parsing


def test_expected_files_exist():
    missing = [f for f in EXPECTED_FILES if not (INFRA / f).is_file()]
    assert not missing, f"missing in infra/: {missing}"


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_manifest_parses(path):
    docs = _load(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is a {type(doc).__name__}, not a mapping"
        if path.suffix != ".json" and "kind" in doc:
            assert doc.get("apiVersion"), f"{path}: {doc['kind']} has no apiVersion"
            assert doc.get("metadata", {}).get("name"), f"{path}: {doc['kind']} has no metadata.name"


# --------------------------------------------------------------------------- the folio CLI


def _check_folio_argv(argv: list[str], where: str, group: click.Group = folio_cli, prog: str = "folio") -> None:
    """Parse ``folio ARGV`` with the real click group: subcommands (lazy ones too), options, choices."""
    ctx = click.Context(group, info_name=prog)
    group_opts = {o for p in group.params for o in (*p.opts, *p.secondary_opts)} | {"-h", "--help"}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        assert argv[i] in group_opts, f"{where}: `folio {' '.join(argv)}`: no global option {argv[i]}"
        i += 1
    if i == len(argv):
        return
    name, rest = argv[i], argv[i + 1 :]
    command = group.get_command(ctx, name)
    assert command is not None, f"{where}: `folio {' '.join(argv)}`: no subcommand {name!r}"
    if isinstance(command, click.Group):
        _check_folio_argv(rest, where, command, f"{prog} {name}")
        return
    try:
        command.make_context(name, list(rest), parent=ctx)
    except click.exceptions.Exit:  # --help
        pass
    except click.UsageError as e:
        raise AssertionError(f"{where}: `folio {' '.join(argv)}`: {e.format_message()}") from e


def _folio_command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for path in _manifest_files():
        rel = str(path.relative_to(ROOT))
        for doc in _load(path):
            for item in _strings(doc):
                if isinstance(item, list):
                    if item[0] == "folio" and len(item) > 1:
                        found.append((rel, item[1:]))
                    continue
                found += [(rel, argv) for argv in _folio_argvs(_shell_words(item.replace("\n", " ")))]
        for line in path.read_text(encoding="utf-8").splitlines():  # comments: documented commands
            if line.lstrip().startswith("#"):
                found += [(rel + " (comment)", argv) for argv in _folio_argvs(_shell_words(line.lstrip("# ")))]
    rel = str(DOCKERFILE.relative_to(ROOT))
    for words in _run_commands():
        found += [(rel, argv) for argv in _folio_argvs(words)]
    entry = [json.loads(rest) for instr, rest in _dockerfile_instructions() if instr == "ENTRYPOINT"]
    cmd = [json.loads(rest) for instr, rest in _dockerfile_instructions() if instr == "CMD"]
    if entry and entry[-1][:1] == ["folio"]:
        found.append((rel + " ENTRYPOINT+CMD", entry[-1][1:] + (cmd[-1] if cmd else [])))
    return found


def test_folio_command_lines_use_real_subcommands_and_options():
    lines = _folio_command_lines()
    assert any(argv[:1] == ["run"] and "--runner" in argv for _, argv in lines), "no `folio run --runner` found"
    for where, argv in lines:
        _check_folio_argv(argv, where)


def test_the_cli_check_rejects_what_click_rejects():
    with pytest.raises(AssertionError, match="(?i)no such option"):
        _check_folio_argv(["run", "a", "b", "--runners", "ray"], "t")
    with pytest.raises(AssertionError, match="subcommand"):
        _check_folio_argv(["ocr", "a"], "t")
    with pytest.raises(AssertionError, match="ray2"):
        _check_folio_argv(["run", "a", "b", "--runner", "ray2"], "t")


def test_rayjob_runs_folio_on_ray_with_the_configmap_config():
    job = _one("RayJob")
    spec = job["spec"]
    argv = _shell_words(spec["entrypoint"])
    assert argv[:2] == ["folio", "run"] and argv[argv.index("--runner") + 1] == "ray"
    assert "--address" not in argv, "the driver joins the cluster through RAY_ADDRESS, which the job supervisor sets"
    config_path = Path(argv[argv.index("--config") + 1])
    cluster = _raycluster()
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    head = cluster["spec"]["headGroupSpec"]["template"]
    mounts = {m["name"]: m["mountPath"] for c in _containers(head) for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in head["spec"].get("volumes", [])}
    cm = _one("ConfigMap")
    mounted = [n for n, v in volumes.items() if v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
    assert mounted and mounts.get(mounted[0]) == str(config_path.parent), (
        f"the head (where the driver runs) must mount ConfigMap {cm['metadata']['name']} at {config_path.parent}"
    )
    assert config_path.name in cm["data"], f"ConfigMap has no key {config_path.name}"


# --------------------------------------------------------------------------- Folio configuration


def _folio_env_vars() -> list[tuple[str, str, object]]:
    """(file, NAME, value or None) for every FOLIO_*__* variable named in infra/ (as load_config reads them)."""
    found = []
    for path in [*_manifest_files(), DOCKERFILE]:
        rel = str(path.relative_to(ROOT))
        values = {}
        if path != DOCKERFILE:
            for doc in _load(path):
                stack = [doc]
                while stack:
                    node = stack.pop()
                    if isinstance(node, dict):
                        if isinstance(node.get("name"), str) and "value" in node:
                            values[node["name"]] = node["value"]
                        values.update({k: v for k, v in node.items() if isinstance(k, str) and k.startswith("FOLIO_")})
                        stack.extend(node.values())
                    elif isinstance(node, list):
                        stack.extend(node)
        for name in sorted(set(re.findall(r"\bFOLIO_[A-Za-z0-9_]+", path.read_text(encoding="utf-8")))):
            if "__" in name:  # load_config ignores FOLIO_ names without a section separator
                found.append((rel, name, values.get(name)))
    return found


def test_folio_env_vars_name_real_config_fields():
    found = _folio_env_vars()
    assert found, "no FOLIO_<SECTION>__<FIELD> variable in infra/ (compose sets the MinIO endpoint with one)"
    sections = FolioConfig.model_fields
    for where, name, value in found:
        parts = name[len("FOLIO_") :].lower().split("__")
        assert len(parts) == 2, f"{where}: {name} is not FOLIO_<SECTION>__<FIELD>"
        section, field = parts
        assert section in sections, f"{where}: {name}: no config section {section!r}"
        assert field in sections[section].annotation.model_fields, f"{where}: {name}: no field {section}.{field}"
        if isinstance(value, (str, int, float, bool)):
            load_config(environ={name: str(value)})  # the value validates too


def test_embedded_folio_configs_validate(tmp_path):
    configs = _configmap_configs()
    assert "archive.yaml" in configs
    for key, text in configs.items():
        path = tmp_path / key
        path.write_text(text, encoding="utf-8")
        load_config(path, environ={})


def test_gpu_configs_fit_the_gpu_worker_group():
    cluster = _raycluster()
    group = _gpu_group(cluster)
    limits = _containers(group["template"])[0]["resources"]["limits"]
    node_cpus, node_gpus = _cpus(limits["cpu"]), int(limits["nvidia.com/gpu"])
    for key, text in _configmap_configs().items():
        ray = load_config(overrides=None, environ={}).ray.model_copy(update=yaml.safe_load(text).get("ray", {}))
        assert ray.ocr_num_gpus and ray.ocr_num_gpus >= 1, (
            f"{key}: ray.ocr_num_gpus must ask for a GPU, or an OCR pool started while the GPU group is at zero "
            "never makes the autoscaler add GPU nodes"
        )
        assert ray.ocr_actors <= group["maxReplicas"] * node_gpus, f"{key}: more OCR actors than GPUs the group can have"
        decode_per_node = ray.max_decode_tasks / ray.ocr_actors * ray.decode_num_cpus
        assert ray.ocr_num_cpus + decode_per_node <= node_cpus, (
            f"{key}: an OCR actor ({ray.ocr_num_cpus} CPUs) and its share of decode tasks ({decode_per_node} CPUs) "
            f"do not fit a {node_cpus}-CPU GPU node"
        )
    archive = yaml.safe_load(_configmap_configs()["archive.yaml"])["ray"]
    assert archive["ocr_actors"] == group["maxReplicas"] * node_gpus, "archive: one OCR actor per GPU at full scale"


# --------------------------------------------------------------------------- Dockerfile


def _dockerignore_excludes(rel: str) -> bool:
    path = ROOT / ".dockerignore"
    if not path.is_file():
        return False
    excluded = False
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/"):
            excluded = not negate
    return excluded


def test_dockerfile_copies_files_that_exist_and_are_in_the_context():
    copies = 0
    for instr, rest in _dockerfile_instructions():
        if instr not in ("COPY", "ADD"):
            continue
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        if any(w.startswith("--from") for w in shlex.split(rest)):
            continue
        for src in words[:-1]:
            copies += 1
            assert (ROOT / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
            assert not _dockerignore_excludes(src.rstrip("/")), f".dockerignore leaves {src} out of the build context"
    assert copies >= 3


def test_dockerfile_verification_imports_resolve():
    snippets = _python_c_snippets()
    assert any("model_files" in s for s in snippets), "the image build must load and sha256-check the models"
    project = _pyproject()["project"]
    extras = [e for e in _dockerfile_args().get("FOLIO_EXTRAS", "").split(",") if e]
    provided = {_req_name(r) for r in project["dependencies"]}
    for extra in extras:
        provided |= {_req_name(r) for r in project.get("optional-dependencies", {}).get(extra, [])}
    for code in snippets:
        tree = ast.parse(code)
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [(a.name, None) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [(node.module, [a.name for a in node.names])]
            else:
                continue
            for module, names in modules:
                top = module.split(".")[0]
                if top in ("pipeline", "flows"):
                    mod = importlib.import_module(module)
                    for name in names or []:
                        assert hasattr(mod, name), f"Dockerfile imports {name} from {module}, which has no such name"
                        imported[name] = getattr(mod, name)
                else:
                    assert top in sys.stdlib_module_names or _req_name(top) in provided, (
                        f"Dockerfile imports {top}, which neither the stdlib nor pyproject (with extras {extras}) provides"
                    )
        for node in ast.walk(tree):  # keyword arguments of Folio calls exist
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
                signature = inspect.signature(imported[node.func.id])
                signature.bind_partial(*[None] * len(node.args), **{k.arg: None for k in node.keywords if k.arg})


def test_dockerfile_packages_match_the_project():
    runs = _run_commands()
    pip, apt = [], []
    for words in runs:
        for i, word in enumerate(words):
            if word == "install" and i > 0 and words[i - 1] == "pip" or words[i - 1].endswith("/pip"):
                target = pip
            elif word == "install" and i > 0 and words[i - 1] == "apt-get":
                target = apt
            else:
                continue
            for w in words[i + 1 :]:
                if w in _SHELL_STOP:
                    break
                if not w.startswith("-"):
                    target.append(w)
    pip = [p for p in pip if p != "pip"]  # pip install --upgrade pip
    project = _pyproject()["project"]
    optional = project.get("optional-dependencies", {})
    local = [p for p in pip if p.startswith(".")]
    assert local, "the image must install Folio itself (pip install .[extras])"
    for spec in local:
        extras = re.fullmatch(r"\.(?:\[([\w,-]*)\])?", spec)
        assert extras, f"cannot read {spec!r}"
        for extra in filter(None, (extras.group(1) or "").split(",")):
            assert extra in optional, f"Dockerfile installs extra {extra!r}, which pyproject.toml does not define"
    gpu_extra = [e for e in _dockerfile_args().get("FOLIO_EXTRAS", "").split(",") if e]
    assert any(_req_name(r) == "torch" for e in gpu_extra for r in optional.get(e, [])), (
        "the default image build must install torch through a pyproject extra"
    )
    dependencies = {_req_name(r) for r in project["dependencies"]}
    for spec in pip:
        if not spec.startswith("."):
            assert _req_name(spec) in dependencies, f"Dockerfile installs {spec}, not a pyproject dependency"
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    declared = set(re.search(r"APT_PACKAGES=\(([^)]*)\)", setup).group(1).split())
    langs = FolioConfig().tesseract.lang.split("+")
    assert {"tesseract-ocr", *(f"tesseract-ocr-{lang}" for lang in langs)} <= set(apt)
    for package in apt:
        if package.startswith("tesseract"):
            assert package in declared, f"{package} is not among scripts/setup.sh's APT_PACKAGES"


def test_dockerfile_runs_folio_as_a_non_root_user():
    instrs = _dockerfile_instructions()
    users = [rest for instr, rest in instrs if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must end as a non-root USER"
    entry = [json.loads(rest) for instr, rest in instrs if instr == "ENTRYPOINT"]
    assert entry and entry[-1] == ["folio"]
    assert "folio" in _pyproject()["project"]["scripts"]


# --------------------------------------------------------------------------- IAM


_S3_CALL_ACTIONS = {
    "list_objects_v2": {"s3:ListBucket"},
    "list_objects": {"s3:ListBucket"},
    "head_object": {"s3:GetObject"},
    "get_object": {"s3:GetObject"},
    "put_object": {"s3:PutObject"},
    "create_multipart_upload": {"s3:PutObject"},
    "upload_part": {"s3:PutObject"},
    "complete_multipart_upload": {"s3:PutObject"},
    "abort_multipart_upload": {"s3:AbortMultipartUpload"},
    "list_parts": {"s3:ListMultipartUploadParts"},
    "copy_object": {"s3:GetObject", "s3:PutObject"},
    "delete_object": {"s3:DeleteObject"},
    "delete_objects": {"s3:DeleteObject"},
}


def _s3_actions_the_code_needs() -> set[str]:
    calls = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        calls |= set(re.findall(r"\bclient\.(\w+)\(", text))
        calls |= set(re.findall(r"get_paginator\(\s*[\"'](\w+)[\"']", text))
    calls.discard("get_paginator")
    unknown = calls - set(_S3_CALL_ACTIONS)
    assert not unknown, f"S3 calls with no IAM mapping in this test: {unknown}; add them and to the policy"
    assert {"list_objects_v2", "get_object", "put_object"} <= calls, f"found only {calls}"
    return set().union(*(_S3_CALL_ACTIONS[c] for c in calls))


def test_iam_policy_is_least_privilege_and_covers_the_code():
    policy = json.loads((INFRA / "iam" / "folio-policy.json").read_text(encoding="utf-8"))
    granted = set()
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        resources = [st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"]
        assert "NotAction" not in st and "NotResource" not in st
        for action in actions:
            assert action.startswith("s3:") and "*" not in action, f"{st.get('Sid')}: action {action}"
            assert "Delete" not in action or "s3:DeleteObject" in _s3_actions_the_code_needs(), (
                f"{st.get('Sid')}: {action}, but the code never deletes"
            )
        granted |= set(actions)
        for resource in resources:
            assert resource.startswith("arn:aws:s3:::") and resource != "arn:aws:s3:::*"
            bucket, _, key = resource[len("arn:aws:s3:::") :].partition("/")
            assert bucket and "*" not in bucket, f"{resource}: a wildcard bucket"
            if actions == ["s3:ListBucket"]:
                assert not key, "s3:ListBucket applies to a bucket"
                prefixes = st["Condition"]["StringLike"]["s3:prefix"]
                prefixes = [prefixes] if isinstance(prefixes, str) else prefixes
                assert all(p.endswith("/*") and "*" not in p[:-2] and p[:-2] for p in prefixes), (
                    f"{st.get('Sid')}: listing must be limited to a prefix, got {prefixes}"
                )
            else:
                assert key.endswith("/*") and key[:-2] and "*" not in key[:-2], f"{resource}: objects under a prefix only"
    needed = _s3_actions_the_code_needs()
    assert needed <= granted, f"the code calls S3 for {needed - granted}, which the policy does not grant"
    assert granted <= needed, f"the policy grants {granted - needed}, which the code never needs"
    writes = {"s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"}
    input_resources = [
        r for st in policy["Statement"] for r in ([st["Resource"]] if isinstance(st["Resource"], str) else st["Resource"])
        if "INPUT_BUCKET" in r and writes & set([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    ]
    assert not input_resources, "the input is read-only"


# --------------------------------------------------------------------------- KubeRay


def test_raycluster_has_an_autoscaled_gpu_group_and_a_cpu_head():
    cluster = _raycluster()
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec.get("enableInTreeAutoscaling") is True
    group = _gpu_group(cluster)
    gpus = _containers(group["template"])[0]["resources"]["limits"]["nvidia.com/gpu"]
    assert int(gpus) == 1, "one GPU per worker pod (one OCR actor each)"
    assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
    assert group["maxReplicas"] > group["minReplicas"], "nothing to autoscale"
    head = spec["headGroupSpec"]
    for c in _containers(head["template"]):
        for part in ("limits", "requests"):
            assert "nvidia.com/gpu" not in c.get("resources", {}).get(part, {}), "the head is CPU only"
    assert head["rayStartParams"].get("num-gpus", "0") == "0"
    assert "num-cpus" in head["rayStartParams"], "say how many head CPUs Ray may schedule (the rest are the drivers')"
    images = {c["image"] for g in [head, *spec["workerGroupSpecs"]] for c in _containers(g["template"])}
    assert len(images) == 1, f"head and workers must run one image, got {images}"


def test_ray_token_authentication_is_on():
    cluster = _raycluster()
    spec = cluster["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    if spec.get("authOptions", {}).get("mode") == "token":
        major, minor = (int(x) for x in spec["rayVersion"].split(".")[:2])
        assert (major, minor) >= (2, 52), "Ray token authentication needs Ray >= 2.52"
    else:
        for g in groups:
            for c in _containers(g["template"]):
                assert _env(c).get("RAY_AUTH_MODE") == "token", f"{c['name']}: RAY_AUTH_MODE is not token"
    for path in _manifest_files():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"RAY_AUTH_MODE\W+disabled", text), f"{path}: token authentication turned off"
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))
    for name in ("ray-head", "prefect-worker"):
        assert compose["services"][name]["environment"]["RAY_AUTH_MODE"] == "token"


def test_s3_access_comes_from_the_service_account_not_secrets():
    accounts = {d["metadata"]["name"]: d for d in _docs_of_kind("ServiceAccount")}
    cluster = _raycluster()
    spec = cluster["spec"]
    for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        sa = g["template"]["spec"].get("serviceAccountName")
        assert sa in accounts, f"Ray pods must run as a ServiceAccount defined in infra/, got {sa!r}"
        assert "eks.amazonaws.com/role-arn" in accounts[sa]["metadata"].get("annotations", {}), f"{sa}: no IRSA role"
    for path in _manifest_files():
        if path.name == "compose.yaml":  # MinIO's development credentials only
            continue
        text = path.read_text(encoding="utf-8")
        assert "AWS_SECRET_ACCESS_KEY" not in text and "AWS_ACCESS_KEY_ID" not in text, f"{path}: static AWS keys"
    pool = json.loads((INFRA / "prefect" / "work-pool.json").read_text(encoding="utf-8"))
    assert pool["variables"]["properties"]["service_account_name"]["default"] in accounts


# --------------------------------------------------------------------------- Prefect


def _placeholders(node) -> set[str]:
    found = set()
    for item in _strings(node):
        for s in [item] if isinstance(item, str) else item:
            found |= set(re.findall(r"\{\{\s*([\w.]+)\s*\}\}", s))
    return found


@pytest.mark.parametrize("name", ["work-pool.json", "work-pool.process.json"])
def test_work_pool_templates_declare_every_placeholder(name):
    pool = json.loads((INFRA / "prefect" / name).read_text(encoding="utf-8"))
    used = _placeholders(pool["job_configuration"])
    declared = set(pool["variables"]["properties"])
    assert used, "no placeholders"
    assert used <= declared, f"{name}: placeholders without a variable: {used - declared}"
    assert declared <= used, f"{name}: variables never used in job_configuration: {declared - used}"


def test_kubernetes_work_pool_reaches_the_ray_cluster():
    pool = json.loads((INFRA / "prefect" / "work-pool.json").read_text(encoding="utf-8"))
    props = pool["variables"]["properties"]
    manifest = pool["job_configuration"]["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "prefect-job", "prefect-kubernetes requires the first container to be prefect-job"
    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert "RAY_ADDRESS" not in env, "RAY_ADDRESS belongs in the env variable, so prefect.yaml can set it"
    cluster = _raycluster()
    secret = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert secret["key"] == "auth_token"
    assert props["ray_token_secret"]["default"] == cluster["spec"]["authOptions"]["secretName"]
    address = props["env"]["default"]["RAY_ADDRESS"]
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    client_ports = [p["containerPort"] for c in _containers(cluster["spec"]["headGroupSpec"]["template"])
                    for p in c.get("ports", []) if p.get("name") == "client"]
    assert client_ports, "the head must expose the Ray Client port"
    assert re.fullmatch(rf"ray://{name}-head-svc(\.{namespace}(\.svc(\.cluster\.local)?)?)?:{client_ports[0]}", address), address
    assert props["namespace"]["default"] == namespace
    head_image = _containers(cluster["spec"]["headGroupSpec"]["template"])[0]["image"]
    assert props["image"]["default"] == head_image, "flow runs use the Folio image too"
    workdir = [rest for instr, rest in _dockerfile_instructions() if instr == "WORKDIR"][-1]
    assert container["workingDir"] == workdir, "flow pods start where the image keeps flows/"


def test_configmap_configs_match_the_repository_configs(tmp_path):
    """A RayJob and a flow run of the same job must share a fingerprint, or each redoes the other's documents."""
    from pipeline.run import fingerprint

    shared = [k for k in _configmap_configs() if (ROOT / "configs" / k).is_file()]
    assert "archive.yaml" in shared, "configs/archive.yaml is the archive job's config"
    for key in shared:
        path = tmp_path / key
        path.write_text(_configmap_configs()[key], encoding="utf-8")
        cluster, repo = load_config(path, environ={}), load_config(ROOT / "configs" / key, environ={})
        assert fingerprint(cluster) == fingerprint(repo), f"{key}: the ConfigMap changes the output"
        assert cluster.jobs == repo.jobs, f"{key}: shard sizes, retries and alert thresholds differ from configs/{key}"


def test_the_work_pools_job_command_runs_prefects_flow_run_command_in_the_image():
    """The Kubernetes Job the worker renders from work-pool.json, started the way Kubernetes starts it
    (the container's ``command`` replaces the image's ENTRYPOINT, its ``args`` the CMD), reaches
    ``prefect flow-run execute``, not ``folio prefect ...``."""
    import os
    import subprocess

    from prefect.utilities.templating import apply_values
    from prefect.workers.base import BaseJobConfiguration

    pool = json.loads((INFRA / "prefect" / "work-pool.json").read_text(encoding="utf-8"))
    defaults = {k: v.get("default") for k, v in pool["variables"]["properties"].items()}
    job = apply_values(pool["job_configuration"], defaults)  # how a worker renders it, with the defaults
    container = job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    # prefect-kubernetes puts the flow-run command into the first container's args when they are empty
    # (the work pool's `command` variable defaults to null), and splits a string into words.
    args = container.get("args") or BaseJobConfiguration._base_flow_run_command()
    args = shlex.split(args) if isinstance(args, str) else list(args)
    assert args[:3] == ["prefect", "flow-run", "execute"], args
    entrypoint = [json.loads(rest) for instr, rest in _dockerfile_instructions() if instr == "ENTRYPOINT"][-1]
    argv = list(container.get("command") or entrypoint) + args
    # In the image, `folio` and `prefect` are the virtualenv's, on PATH; here, this interpreter's.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}: {proc.stderr[-500:]}"
    assert "flow run" in proc.stdout.lower(), proc.stdout[:500]


@pytest.mark.parametrize("key", ["archive.yaml", "invoices.yaml"])
def test_the_shipped_jobs_compute_on_the_gpus_of_the_cluster(key, tmp_path):
    """As deployed (a Prefect flow run with the work pool's or prefect.yaml's environment, or a RayJob
    with the ConfigMap), a job resolves for the GPU workers: torch on CUDA in float16, and one
    fingerprint for both, planned on a CPU-only pod without asking the cluster, whose GPU group
    may be at zero."""
    from pipeline.run import fingerprint, settle

    pool = json.loads((INFRA / "prefect" / "work-pool.json").read_text(encoding="utf-8"))
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    environments = {
        "work pool": pool["variables"]["properties"]["env"]["default"],
        "prefect.yaml": deployments["definitions"]["work_pool"]["job_variables"]["env"],
    }
    path = tmp_path / key
    path.write_text(_configmap_configs()[key], encoding="utf-8")
    planned = {"RayJob": settle(load_config(path, environ={}), "ray")}
    for where, env in environments.items():
        folio_env = {k: str(v) for k, v in env.items() if k.startswith("FOLIO_")}
        planned[f"flow ({where})"] = settle(load_config(ROOT / "configs" / key, environ=folio_env), "ray")
    for where, config in planned.items():
        engine = config.engine
        assert (engine.name, engine.device, engine.dtype) == ("torch", "cuda", "float16"), f"{key}, {where}: {engine}"
    assert len({fingerprint(c) for c in planned.values()}) == 1, f"{key}: the deployments plan different outputs"


def test_work_pool_name_agrees_everywhere():
    worker = next(d for d in _docs_of_kind("Deployment") if d["metadata"]["name"] == "prefect-worker")
    argv = worker["spec"]["template"]["spec"]["containers"][0]["command"]
    assert argv[:3] == ["prefect", "worker", "start"]
    assert argv[argv.index("--pool") + 1] == POOL
    assert argv[argv.index("--type") + 1] == "kubernetes"
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))
    local = compose["services"]["prefect-worker"]["command"]
    assert local[local.index("--pool") + 1] == POOL
    template = local[local.index("--base-job-template") + 1]
    mounts = dict(v.split(":")[:2][::-1] for v in compose["services"]["prefect-worker"]["volumes"])
    host_dir = next(h for c, h in mounts.items() if template.startswith(c + "/"))
    assert (INFRA / host_dir / Path(template).name).is_file()
    for path in (INFRA / "prefect").iterdir():
        for pool in re.findall(r"--pool[ =\"',\s-]*([\w-]+)", path.read_text(encoding="utf-8")):
            assert pool == POOL, f"{path}: pool {pool}"
    prefect_yaml = ROOT / "prefect.yaml"
    if prefect_yaml.is_file():  # the deployments' file, kept at the repository root
        for dep in yaml.safe_load(prefect_yaml.read_text(encoding="utf-8")).get("deployments", []):
            name = (dep.get("work_pool") or {}).get("name")
            assert name in (POOL, None) or "{{" in str(name), f"prefect.yaml: {dep.get('name')} uses pool {name}"


# --------------------------------------------------------------------------- compose


def test_compose_stack_has_minio_prefect_and_a_ray_head():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    init = " ".join(services["minio-init"]["command"])
    assert services["minio-init"]["image"].startswith("minio/mc") and "mc mb" in init
    assert "folio-in" in init and "folio-out" in init
    assert services["prefect-server"]["command"][:3] == ["prefect", "server", "start"]
    assert any(p.endswith(":4200") for p in services["prefect-server"]["ports"])
    head = services["ray-head"]
    argv = head["entrypoint"] + head["command"]
    assert argv[:3] == ["ray", "start", "--head"] and "--block" in argv
    assert "--ray-client-server-port=10001" in argv
    assert {p.rsplit(":", 1)[1] for p in head["ports"]} >= {"8265", "10001"}
    build = head["build"]
    assert (INFRA / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert head["environment"]["FOLIO_STORAGE__ENDPOINT_URL"] == "http://minio:9000"
    config = load_config(environ={k: str(v) for k, v in head["environment"].items() if k.startswith("FOLIO_")})
    assert config.storage.endpoint_url == "http://minio:9000"
