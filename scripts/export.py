#!/usr/bin/env python3
"""`cornernet-export` from a checkout: see cornernet_tf/cli/export.py."""

import sys

from cornernet_tf.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
