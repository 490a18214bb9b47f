#!/usr/bin/env python
"""Generate MODEL_ZOO.md from the model zoo manifest (the file is never edited by hand).

Examples::

    python tools/zoo_table.py                      # model_zoo/manifest.json -> MODEL_ZOO.md
    python tools/zoo_table.py --check              # CI: fail if MODEL_ZOO.md is out of date
    python tools/zoo_table.py --manifest /tmp/m.json --output /tmp/MODEL_ZOO.md
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from fpn_variants import model_zoo

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _shown(path: str) -> str:
    """``path`` relative to the repo root when inside it (keeps the header free of local paths)."""
    try:
        return Path(path).resolve().relative_to(_REPO_ROOT).as_posix()
    except ValueError:
        return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--manifest",
        default=model_zoo.default_manifest_path(),
        help=f"manifest to read (default: ${model_zoo.MANIFEST_ENV} or model_zoo/manifest.json)",
    )
    parser.add_argument(
        "--output",
        default=str(_REPO_ROOT / "MODEL_ZOO.md"),
        help="file to write (default: MODEL_ZOO.md at the repo root)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check that --output is up to date (exit 1 if not)",
    )
    args = parser.parse_args(argv)

    command = f"python tools/zoo_table.py --manifest {_shown(args.manifest)}"
    if Path(args.output).resolve() != (_REPO_ROOT / "MODEL_ZOO.md").resolve():
        command += f" --output {_shown(args.output)}"
    output = Path(args.output)
    try:
        if not args.check:
            model_zoo.write_model_zoo(args.manifest, output, command=command)
            print(f"wrote {output} ({len(model_zoo.list_models(args.manifest))} models)")
            return 0
        text = model_zoo.render_model_zoo(args.manifest, output, command=command)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not output.is_file() or output.read_text(encoding="utf-8") != text:
        print(f"{output} is out of date: run `{command}`", file=sys.stderr)
        return 1
    print(f"{output} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
