import sys

from onss_tui.cli import main

sys.exit(main())
