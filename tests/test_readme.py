"""The README's test command is the one CI runs."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).splitlines()
    assert block[0].startswith("# 1.") and block[2].startswith("# 2.")
    install_and_compile, install_and_test = block[1], block[3]
    assert "sparsecc compile tiny-llama --target h100 --out out/" in install_and_compile
    assert install_and_test in ci.splitlines(), "CI does not run the README's test command"
    assert "pytest" in install_and_test
