"""Installs the tests' faults (slmscale_faults.py) in a process started with SLMSCALE_TEST_FAULTS.

Python imports `sitecustomize` at start-up from the path; this folder is put on PYTHONPATH only by
tests that inject faults into processes they start (CLI commands, Ray workers).  The faults are
installed right after `slmscale.train.loop` is first imported, so nothing else is imported early.
"""

import os
import sys

if os.environ.get("SLMSCALE_TEST_FAULTS"):
    import importlib.abc
    import importlib.util
    import json

    class _InstallAfterLoop(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "slmscale.train.loop":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            real_exec = spec.loader.exec_module

            def exec_module(module):
                real_exec(module)
                import slmscale_faults

                slmscale_faults.install(json.loads(os.environ["SLMSCALE_TEST_FAULTS"]))

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _InstallAfterLoop())
