"""``python -m modelyard.server`` is ``modelyard server``."""

from modelyard.cli import main

if __name__ == "__main__":
    main(["server", *__import__("sys").argv[1:]])
