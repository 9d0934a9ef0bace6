#!/usr/bin/env python3
"""`cornernet-make-shapes` from a checkout: see cornernet_tf/cli/make_shapes.py."""

import sys

from cornernet_tf.cli.make_shapes import main

if __name__ == "__main__":
    sys.exit(main())
