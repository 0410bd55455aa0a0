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


def _python_blocks():
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", readme, re.S)


def test_the_readme_python_blocks_run_as_written(tmp_path, monkeypatch, require_weights):
    # in a folder where an earlier run's out-api/ exists (what a user has after running it once)
    from sparsecc.outdir import write_out
    blocks = _python_blocks()
    assert blocks, "the README has no Python example"
    for name in ("minilm",):
        if any(f'models.get("{name}")' in b for b in blocks):
            require_weights(name)
    monkeypatch.chdir(tmp_path)
    write_out(str(tmp_path / "out-api"), lambda d: (tmp_path / "earlier").touch(), False, ())
    for code in blocks:
        scope: dict = {"__name__": "__readme__"}
        exec(compile(code, "README.md", "exec"), scope)     # our own file, not user input
    assert (tmp_path / "out-api" / "manifest.json").is_file()
    assert scope["again"] is not None


def test_the_readme_mnist_dense_accuracy_is_what_eval_measures(require_weights):
    """`sparsecc eval mnist-cnn` trains the CNN here (float64: the same model on any x86-64
    CPU with AVX2 or AVX-512) and scores it; the README's table and text show that figure."""
    require_weights("mnist-cnn")
    from sparsecc.models.evaluate import task
    t = task("mnist-cnn")
    dense = t.score_model(t.model)
    readme = (ROOT / "README.md").read_text()
    assert f"| mnist-cnn | dense | {dense:.4f} | 1.00× |" in readme
    assert f"(`dense {dense:.4f}`)" in readme
