#!/usr/bin/env python3
"""`cornernet-evaluate` from a checkout: see cornernet_tf/cli/evaluate.py."""

import sys

from cornernet_tf.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
