"""The engine child of `runner.run_isolated`: `python -m harness.engine_child REQUEST.json`.

It reads the whole request from the record its parent wrote (RunRequest.to_json), so every
protocol override and engine setting reaches it, and runs it in this process.
"""

import sys

from .runner import child_main

if __name__ == "__main__":
    sys.exit(child_main())
