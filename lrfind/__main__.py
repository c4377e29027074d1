import sys

from lrfind.cli import main

sys.exit(main())
