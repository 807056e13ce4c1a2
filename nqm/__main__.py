import sys

from nqm.cli import main

sys.exit(main())
