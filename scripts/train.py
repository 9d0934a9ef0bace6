#!/usr/bin/env python3
"""`cornernet-train` from a checkout: see cornernet_tf/cli/train.py."""

import sys

from cornernet_tf.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
