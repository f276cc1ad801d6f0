"""`python -m common.sidebyside [--check] [--screenshot]`: what `make read` runs."""

from common.sidebyside.page import main

raise SystemExit(main())
