"""`python -m keras_damped.cli`: the `keras-damped` command."""

import sys

from keras_damped.cli import main

sys.exit(main())
