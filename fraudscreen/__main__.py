import sys

from fraudscreen.cli import main

sys.exit(main())
