"""Metadata lives in pyproject.toml. With CORNERNET_BUILD_OPS=1 the build also compiles the
custom ops, corner pooling and Winograd (custom_ops/build.py); it needs TensorFlow in the build
environment, hence:

    CORNERNET_BUILD_OPS=1 pip install --no-build-isolation -e .
"""

import os
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithOps(build_py):
    def run(self):
        if os.environ.get("CORNERNET_BUILD_OPS") == "1":
            subprocess.run([sys.executable, "custom_ops/build.py"], check=True)
        super().run()


setup(cmdclass={"build_py": BuildPyWithOps})
