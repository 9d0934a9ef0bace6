#!/usr/bin/env python3
"""`cornernet-convert` from a checkout: see cornernet_tf/cli/convert.py."""

import sys

from cornernet_tf.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
