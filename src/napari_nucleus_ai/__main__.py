import sys

from napari_nucleus_ai.cli import main

sys.exit(main())
