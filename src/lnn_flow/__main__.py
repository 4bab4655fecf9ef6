import sys

from ._command._cli import main

sys.exit(main())
