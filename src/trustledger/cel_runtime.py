"""The CEL runtime policies use, loaded without the ``cel`` package's command line.

``import cel`` runs the package's ``__init__``, which imports its interactive shell
(``cel.cli``: prompt_toolkit, pygments, Rich syntax highlighting) before the Rust
extension that compiles and runs expressions — 0.1 to 0.4 s added to the start of every
process that reads a policy. This module loads only the extension (``cel.cel``, with
its type stubs), registered under its own name, so a later ``import cel`` reuses it::

    from trustledger.cel_runtime import cel
    program = cel.compile("score >= 600")
    program.execute({"score": 640})
"""

from __future__ import annotations

import sys
from importlib.machinery import PathFinder
from importlib.util import find_spec, module_from_spec
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import cel.cel as cel
else:

    def _load() -> ModuleType:
        """The extension module ``cel.cel``, imported once, without ``cel/__init__``."""
        if "cel.cel" in sys.modules:
            return sys.modules["cel.cel"]
        package = find_spec("cel")  # finds the package; runs nothing
        spec = PathFinder.find_spec("cel.cel", package.submodule_search_locations)
        module = module_from_spec(spec)
        sys.modules["cel.cel"] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules["cel.cel"]
            raise
        return module

    cel = _load()

__all__ = ["cel"]
