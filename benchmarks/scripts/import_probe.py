"""Run one ``lstmconvert`` command in this process, then list the frameworks it imported.

    python import_probe.py convert SRC -o DST --force

Prints the CLI's output, then a last line of JSON: {"exit": code, "frameworks": [...]} where a
framework counts as imported when its top-level module is in ``sys.modules``; exits with the CLI's code.
"""

from __future__ import annotations

import json
import sys

FRAMEWORKS = ("torch", "tensorflow", "keras", "tf_keras", "onnx", "onnxruntime", "onnxscript", "h5py")


def main() -> None:
    from lstmconvert.cli import main as cli

    code = cli(sys.argv[1:])
    loaded = [name for name in FRAMEWORKS if name in sys.modules]
    print(json.dumps({"exit": code, "frameworks": loaded}))
    sys.exit(code)


if __name__ == "__main__":
    main()
