import sys

from panoptic_perception.cli import main

if __name__ == "__main__":
    sys.exit(main())
