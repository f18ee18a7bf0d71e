"""The package layout follows the data flow: a training method never reaches into the evaluation."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "she_bench"


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a file of `package` imports, at the top or inside a function (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_imported_modules_sees_every_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import she_bench.evaluation.metrics\nfrom ..evaluation import evaluate\n"
                      "def f():\n    from she_bench.evaluation.evaluate import evaluate\n")
    found = imported_modules(sample, "she_bench.methods")
    assert {"she_bench.evaluation.metrics", "she_bench.evaluation.evaluate"} <= found
    assert "she_bench.evaluation" in found


def test_methods_do_not_import_the_evaluation():
    offenders = {str(p.relative_to(PACKAGE.parent)): sorted(m for m in imported_modules(p, "she_bench.methods")
                                                           if m == "she_bench.evaluation" or m.startswith("she_bench.evaluation."))
                 for p in sorted((PACKAGE / "methods").rglob("*.py"))}
    assert not {k: v for k, v in offenders.items() if v}
