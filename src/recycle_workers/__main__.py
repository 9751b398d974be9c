import sys

from recycle_workers.cli import main

sys.exit(main())
