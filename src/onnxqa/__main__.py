"""``python -m onnxqa``: the same as the ``onnxqa`` command."""

import sys

from .cli import main

sys.exit(main())
