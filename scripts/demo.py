#!/usr/bin/env python3
"""`cornernet-demo` from a checkout: see cornernet_tf/cli/demo.py."""

import sys

from cornernet_tf.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
