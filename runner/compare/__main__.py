import sys

from runner.compare.main import main

sys.exit(main())
