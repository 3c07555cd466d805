"""Build the optional compiled event loop: ``python -m graphrep.sim.build_fast``.

Why: the simulator's speed is the cost of its event loop in CPython bytecode. mypyc
(part of mypy) compiles the typed loop module, :mod:`graphrep.sim._loop`, to a C
extension that runs the same code without the interpreter's per-instruction overhead
(see ``experiments/sim_bench.py`` for what it buys). Nothing requires it: without the
extension, or with ``GRAPHREP_SIM_PURE=1``, the simulator runs the plain-Python
module (:mod:`graphrep.sim.variant` chooses), with identical results.

What it does: copies ``_loop.py`` to ``_loop_compiled.py`` with one line appended,
``SOURCE_DIGEST = "<sha256 of _loop.py>"``, compiles that copy in place (a
``_loop_compiled.<abi>.so`` next to ``_loop.py``) and deletes the copy. The simulator
uses the extension only while its digest matches the current ``_loop.py``, so editing
the loop without rebuilding falls back to plain Python (with a warning) instead of
running stale code. ``--clean`` removes the extension.

Needs mypy, setuptools, a C compiler and the Python headers (``make fast-sim``
installs the first two into the virtual environment). Build files go to a temporary
directory.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_loop.py"
NAME = "_loop_compiled"


def built() -> list[Path]:
    """The compiled extension files next to the source: the module and mypyc's runtime
    library for it (``_loop_compiled__mypyc``), or none."""
    return sorted(p for suffix in EXTENSION_SUFFIXES for stem in (NAME, NAME + "__mypyc")
                  for p in HERE.glob(stem + suffix))


def clean() -> None:
    for path in built():
        path.unlink()
        print(f"removed {path.name}")


def build(keep: Path | None = None) -> Path:
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution
    except ImportError as exc:
        raise SystemExit(f"building the compiled loop needs mypy and setuptools ({exc}); "
                         "install them with: pip install mypy setuptools") from None
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    copy = HERE / f"{NAME}.py"
    package_root = HERE.parents[1]  # mypy names the module from its path below this
    clean()
    cwd = os.getcwd()
    try:
        copy.write_bytes(source + f'\n\nSOURCE_DIGEST = "{digest}"\n'.encode())
        with tempfile.TemporaryDirectory(prefix="graphrep-fast-sim-") as tmp:
            if keep is not None:  # the generated C stays there, for profilers
                tmp = str(keep.resolve())
            os.chdir(package_root)
            relative = str(copy.relative_to(package_root))
            extensions = mypycify(
                [relative, "--ignore-missing-imports", "--follow-imports=silent"],
                opt_level="3", target_dir=str(Path(tmp) / "c"))
            dist = Distribution({"name": "graphrep-fast-sim", "ext_modules": extensions})
            command = dist.get_command_obj("build_ext")
            command.inplace = True  # type: ignore[attr-defined]
            command.build_temp = str(Path(tmp) / "temp")  # type: ignore[attr-defined]
            command.build_lib = str(Path(tmp) / "lib")  # type: ignore[attr-defined]
            dist.run_command("build_ext")
    finally:
        os.chdir(cwd)
        copy.unlink(missing_ok=True)
    outputs = built()
    if not outputs:
        raise SystemExit("mypyc ran but produced no extension")
    print(f"built {outputs[0].name} from _loop.py (sha256 {digest[:12]})")
    return outputs[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", action="store_true", help="remove the compiled loop")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="build in DIR and keep the generated C there (for profiling)")
    args = parser.parse_args(argv)
    if args.clean:
        clean()
    else:
        build(args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
