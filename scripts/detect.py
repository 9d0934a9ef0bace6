#!/usr/bin/env python3
"""`cornernet-detect` from a checkout: see cornernet_tf/cli/detect.py."""

import sys

from cornernet_tf.cli.detect import main

if __name__ == "__main__":
    sys.exit(main())
