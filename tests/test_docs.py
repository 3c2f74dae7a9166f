"""Generated docs stay in step with the code."""

from __future__ import annotations

import runpy
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_failures_page_is_current() -> None:
    render = runpy.run_path(str(DOCS / "make_failures.py"))["render"]
    assert (DOCS / "failures.md").read_text() == render(), "run: python docs/make_failures.py"


def test_readme_explain_example_is_what_explain_prints() -> None:
    """The README shows `genguard explain` on a bundled capture; the block must stay the real output."""
    import re

    from click.testing import CliRunner

    from genguard.cli import cli

    root = DOCS.parent
    readme = (root / "README.md").read_text()
    block = re.search(r"```\n\$ genguard explain (\S+)\n(.*?)```", readme, flags=re.S)
    assert block, "README lost its explain example"
    capture, shown = block.group(1), block.group(2)
    result = CliRunner().invoke(cli, ["explain", str(root / capture)])
    assert result.exit_code == 0
    printed = result.output.replace(str(root) + "/", "")
    assert printed.strip() == shown.strip()


# Packages a user imports by their dotted name; everything else is reached as `genguard.Name`.
PUBLIC_MODULES = {
    "genguard",
    "genguard.sim",
    "genguard.validators",
    "genguard.integrations.otel",
    "genguard.integrations.ray_data",
}


def _pages() -> list[Path]:
    return [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]


def _python_blocks() -> list[tuple[str, str]]:
    import re

    blocks = []
    for page in _pages():
        for n, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S), 1):
            blocks.append((f"{page.name} block {n}", code))
    return blocks


def test_python_examples_parse_and_import_only_public_names() -> None:
    import ast

    import genguard

    public = set(genguard.__all__) | {"sim"}
    blocks = _python_blocks()
    assert len(blocks) > 5, "the docs lost their examples"
    problems = []
    for where, code in blocks:
        # A page may show `async with` at the top level, as an async REPL or notebook runs it.
        flags = ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        tree = compile(code, where, "exec", flags=flags)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("genguard"):
                if node.module not in PUBLIC_MODULES:
                    problems.append(f"{where}: from {node.module} import ...")
                elif node.module == "genguard":
                    problems += [f"{where}: genguard.{a.name}" for a in node.names if a.name not in public]
            elif isinstance(node, ast.Import):
                problems += [
                    f"{where}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("genguard") and a.name not in PUBLIC_MODULES
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "genguard"
                and node.attr not in public
            ):
                problems.append(f"{where}: genguard.{node.attr}")
    assert not problems, problems


def test_prose_names_only_public_genguard_attributes() -> None:
    """`genguard.Name` in a page's text must be something `import genguard` gives."""
    import re

    import genguard
    from genguard.integrations.otel import GENGUARD_ATTRIBUTES

    public = set(genguard.__all__) | {"sim", "integrations"}  # genguard.integrations.otel is a public module
    problems = []
    for page in _pages():
        # A span attribute (`genguard.outcome.code`) is not a Python name.
        text = re.sub("|".join(re.escape(f"`{a}") for a in GENGUARD_ATTRIBUTES), "", page.read_text())
        for name in re.findall(r"`genguard\.([A-Za-z_]\w*)", text):
            if name not in public:
                problems.append(f"{page.name}: genguard.{name}")
    assert not problems, problems


# docs/architecture.md's import rules: which of genguard's packages each package may import.
LAYERS = {
    "core": {"core"},
    "client": {"client", "core"},
    "sim": {"sim", "core"},
    "batch": {"batch", "client", "core"},
    "proxy": {"proxy", "client", "core"},
    "integrations": {"integrations", "bulk", "client", "core"},
    "validators": {"core"},
}
NO_IO_IN_CORE = {"httpx", "aiohttp", "socket", "sqlite3", "urllib.request", "http.client"}


def _imports(path: Path, package: str) -> list[str]:
    """Every module `path` imports, anywhere in it, as an absolute dotted name."""
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join([*base, *([node.module] if node.module else [])])
            names.append(stem)
            # `from .. import sim` names a package, not an attribute.
            names += [f"{stem}.{a.name}" for a in node.names if not node.module]
    return names


def test_imports_run_the_way_architecture_md_says() -> None:
    src = DOCS.parent / "src" / "genguard"
    problems = []
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        allowed = LAYERS.get(parts[0])
        if allowed is None:  # cli, __init__, __main__: the top, free to use any layer
            continue
        package = ".".join(["genguard", *parts[:-1]])
        for name in _imports(path, package):
            bits = name.split(".")
            if bits[0] == "genguard" and len(bits) > 1 and bits[1] not in allowed:
                problems.append(f"{path.relative_to(src)} imports {name}")
            if parts[0] == "core" and (name in NO_IO_IN_CORE or bits[0] in NO_IO_IN_CORE):
                problems.append(f"{path.relative_to(src)} imports {name}: core does no I/O")
    assert not problems, problems


def test_architecture_names_only_files_that_exist() -> None:
    import re

    text = (DOCS / "architecture.md").read_text()
    paths = set(re.findall(r"`((?:core|client|sim|cli)/[\w/]+\.py)`", text))
    assert len(paths) > 20, "architecture.md lost its map"
    missing = sorted(p for p in paths if not (DOCS.parent / "src" / "genguard" / p).exists())
    assert not missing, f"architecture.md names files that do not exist: {missing}"
    for doc in re.findall(r"\]\((\w[\w-]*\.md)", text):
        assert (DOCS / doc).exists(), doc
