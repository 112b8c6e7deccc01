"""Which code made a vector: a digest of the modules' source, so that the model cache's keys and
the reuse of an earlier run's vectors move when that code moves, with no version to bump by hand.

The digest is of each module's syntax tree without docstrings: a comment, a docstring or a
reformat keeps it, any change to what the code does moves it. Read through importlib.resources,
so it is the same from a source tree and from the zip the DAG ships to EMR.
"""

from __future__ import annotations

import ast
import hashlib
from importlib import resources

# What builds the model and exports it to OpenVINO: a change here is another model.
MODEL_CODE = ("model.py", "openvino_runtime.py")
# What reads an image, decodes and resizes it, and runs the model on it.
VECTOR_CODE = ("image_reads.py", "images.py", "inference.py", "model_shipping.py")


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return tree


def source_digest(source: str) -> str:
    """SHA-256 of what `source` does: its syntax tree less docstrings (comments are not in it)."""
    tree = _without_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def code_digests(modules: tuple[str, ...], package: str = "imagefeatures") -> dict[str, str]:
    """{module file: source_digest} of `modules` of `package`, as this process imports it."""
    folder = resources.files(package)
    return {
        name: source_digest(folder.joinpath(name).read_text(encoding="utf-8"))[:16]
        for name in modules
    }
