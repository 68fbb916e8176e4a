# On Colab: install the course package (Colab's own torch is kept).
# Elsewhere: nothing to do.
import importlib.util
import subprocess
import sys

if ("google.colab" in sys.modules
        and importlib.util.find_spec("itercourse") is None):
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q",
         "itercourse @ git+https://github.com/itercourse/itercourse"],
        check=True,
    )
