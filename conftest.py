"""Repository root conftest: enables pytester for the plugin's own test suite (tests/).

`pytest --dbgate=staging` at the root gates the demo release; `pytest tests` runs the suite.
"""

pytest_plugins = ["pytester"]
