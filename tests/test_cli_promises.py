"""The command line keeps the README's promises, run as a user runs it: ``python -m lstmconvert`` in a subprocess.

Bad input -> one line on stderr naming the file and the problem, exit 2, nothing on stdout, nothing
written; an option that cannot apply is an error; a missing framework names the file and the extra;
only lstmconvert's own lines reach the terminal; the assumptions a state_dict cannot confirm are said.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TORCH = REPO / "fixtures" / "torch"
KERAS = REPO / "fixtures" / "keras"
ONNX = REPO / "fixtures" / "onnx"
TAGGER = TORCH / "tagger.pt"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def in_process(capsys, *args) -> tuple:
    """The CLI in this process (cheaper), for checks of what a successful command prints."""
    from lstmconvert.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lstmconvert(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lstmconvert", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=300)


def assert_refused(done: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, nothing on stdout, exactly one stderr line 'lstmconvert: error: ...' holding every word."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == "", done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmconvert: error: "), done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def files_in(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir())


# -- 1. an unwritable output folder -------------------------------------------------------------------

def _read_only_mount_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


needs_read_only_mount = pytest.mark.skipif(
    not _read_only_mount_works(),
    reason="needs a read-only tmpfs in a private mount namespace (unshare -m + mount, as root); "
           "folder permissions do not stop root")


def in_read_only_folder(folder: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run ``argv`` with ``folder`` mounted read-only (a private mount: gone when the command ends)."""
    script = 'mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), *argv],
                          capture_output=True, text=True, env=ENV, timeout=300)


@needs_read_only_mount
@pytest.mark.parametrize("extension", [".pt", ".onnx"])  # the staging folder fails before any writer runs
def test_read_only_output_folder_is_one_line_exit_2(tmp_path, extension):
    folder = tmp_path / "ro"
    folder.mkdir()
    target = folder / f"bi{extension}"
    done = in_read_only_folder(folder, sys.executable, "-m", "lstmconvert", "convert", str(TAGGER), "-o", str(target))
    assert_refused(done, str(target), "Read-only file system")
    assert files_in(folder) == []


@needs_read_only_mount
def test_save_into_a_read_only_folder_raises_write_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    code = ("import sys, lstmconvert\n"
            f"model = lstmconvert.load({str(TAGGER)!r})\n"
            "try:\n"
            f"    lstmconvert.save(model, {str(folder / 'bi.onnx')!r})\n"
            "except lstmconvert.WriteError as exc:\n"
            "    print('WriteError', exc)\n")
    done = in_read_only_folder(folder, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("WriteError ") and "bi.onnx" in done.stdout, done.stdout


# -- 2. -o naming an existing folder ------------------------------------------------------------------

def test_output_that_is_a_folder_is_refused_even_with_force(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    assert_refused(lstmconvert("convert", TAGGER, "-o", folder, "--force"), str(folder), "--to")
    assert files_in(folder) == []


def test_save_to_a_folder_raises_write_error(tmp_path):
    import lstmconvert as lc

    with pytest.raises(lc.WriteError, match="is a folder"):
        lc.save(lc.load(TAGGER), tmp_path, format="onnx", force=True)
    assert files_in(tmp_path) == []


# -- 3. the input is never the output -----------------------------------------------------------------

@pytest.mark.parametrize("alias", ["same", "dot", "symlink", "hardlink"])
def test_output_that_is_the_input_is_refused(tmp_path, alias):
    src = tmp_path / "model.pt"
    shutil.copy(TAGGER, src)
    before = src.read_bytes()
    dst = {"same": src, "dot": tmp_path / "." / "model.pt", "symlink": tmp_path / "link.pt",
           "hardlink": tmp_path / "hard.pt"}[alias]
    if alias == "symlink":
        dst.symlink_to(src)
    elif alias == "hardlink":
        os.link(src, dst)
    names = files_in(tmp_path)
    assert_refused(lstmconvert("convert", src, "-o", dst, "--force"), "is the input file")
    assert src.read_bytes() == before and files_in(tmp_path) == names


# -- 4. an option that cannot apply is an error -------------------------------------------------------

INAPPLICABLE = [
    (["--keep-direction", "--backward", "random"], "--backward"),
    (["--keep-direction", "--backward", "copy"], "--backward"),  # given, even if it equals the default
    (["--keep-direction", "--merge", "sum"], "--merge"),
    (["--keep-direction", "--no-preserve"], "--no-preserve"),
    (["--keep-direction", "--seed", "3"], "--seed"),
    (["--seed", "3"], "--seed"),  # --backward copy draws nothing
    (["--opset", "17"], "--opset"),
    (["-j", "2"], "--jobs"),
]


@pytest.mark.parametrize("extra, option", INAPPLICABLE)
def test_convert_refuses_options_that_cannot_apply(tmp_path, extra, option):
    target = ".pt" if option == "--opset" else ".onnx"
    line = assert_refused(lstmconvert("convert", TAGGER, "-o", tmp_path / f"bi{target}", *extra),
                          option, "does not apply")
    assert str(TAGGER) in line or "bi.pt" in line
    assert files_in(tmp_path) == []


def test_opset_for_a_keras_target_is_refused(tmp_path):
    assert_refused(lstmconvert("convert", ONNX / "tf_tagger.onnx", "-o", tmp_path / "bi.keras", "--opset", "17"),
                   "--opset", "not ONNX")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("source", [KERAS / "tagger.keras", ONNX / "tf_tagger.onnx"])
@pytest.mark.parametrize("hint", [["--embedding", "embed"], ["--head", "fc"], ["--batch-first"], ["--seq-first"],
                                  ["--readout", "sequence"]])
def test_read_hints_on_files_that_record_them_are_refused(tmp_path, source, hint):
    assert_refused(lstmconvert("convert", source, "-o", tmp_path / "bi.onnx", *hint), str(source), hint[0],
                   "does not apply")
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("command", [["inspect"], ["roundtrip"], ["verify", KERAS / "tagger.keras"]])
def test_every_command_applies_the_same_rule(command):
    name, *rest = command
    assert_refused(lstmconvert(name, KERAS / "tagger.keras", *rest, "--readout", "last"), "--readout", "does not apply")


def test_seed_with_random_backward_applies(tmp_path, capsys):
    code, _, err = in_process(capsys, "convert", TAGGER, "-o", tmp_path / "bi.pt", "--backward", "random", "--seed", "3")
    assert code == 0, err
    assert files_in(tmp_path) == ["bi.pt"]


# -- 5. reading Keras files needs h5py only -----------------------------------------------------------

def test_h5py_is_a_base_dependency_and_keras_extra_is_for_writing():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("h5py") for dep in project["dependencies"])
    assert any(dep.startswith("keras") for dep in project["optional-dependencies"]["keras"])


BLOCKED_RUN = """
import runpy, sys

class Blocked:
    '''Imports of these top-level packages fail as if they were not installed.'''
    def __init__(self, names):
        self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in self.names:
            raise ModuleNotFoundError(f'No module named {name!r}', name=name)
        return None

sys.meta_path.insert(0, Blocked(sys.argv[1].split(',')))
sys.argv = ['lstmconvert', *sys.argv[2:]]
runpy.run_module('lstmconvert', run_name='__main__', alter_sys=True)
"""


def without(packages: str, *args) -> subprocess.CompletedProcess:
    """``lstmconvert ARGS`` in a process where ``packages`` (comma-separated) cannot be imported."""
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, packages, *map(str, args)], capture_output=True,
                          text=True, env=ENV, timeout=300)


def test_keras_to_onnx_needs_neither_torch_nor_tensorflow(tmp_path):
    done = without("torch,tensorflow,keras,tf_keras", "convert", KERAS / "tagger.keras", "-o", tmp_path / "bi.onnx")
    assert done.returncode == 0, done.stderr
    assert files_in(tmp_path) == ["bi.onnx"]


# -- 6. a missing framework is MissingDependencyError, naming the file and the extra -------------------

def test_missing_torch_names_the_file_and_the_extra(tmp_path):
    # A plain torch.save archive is read without torch; a TorchScript archive needs it.
    script = TORCH / "tagger_script.pt"
    line = assert_refused(without("torch", "convert", script, "-o", tmp_path / "bi.onnx"),
                          str(script), "lstmconvert[torch]")
    assert "not installed" in line
    assert files_in(tmp_path) == []
    code = ("import sys, lstmconvert\n"
            "sys.meta_path.insert(0, type('B', (), {'find_spec': staticmethod(lambda name, *a: "
            "(_ for _ in ()).throw(ModuleNotFoundError(name, name=name)) if name.split('.')[0] == 'torch' else None)})())\n"
            "try:\n"
            f"    lstmconvert.load({str(script)!r})\n"
            "except lstmconvert.MissingDependencyError as exc:\n"
            "    print(type(exc).__name__, exc.extra, exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.stdout.startswith("MissingDependencyError torch ") and str(script) in done.stdout, done


def test_writing_keras_needs_no_keras_and_running_it_names_the_extra(tmp_path):
    done = without("keras,tensorflow,tf_keras", "convert", TAGGER, "-o", tmp_path / "bi.keras")
    assert done.returncode == 0, done.stderr
    assert files_in(tmp_path) == ["bi.keras"]
    assert_refused(without("keras,tensorflow,tf_keras", "verify", TAGGER, tmp_path / "bi.keras"),
                   "bi.keras", "lstmconvert[keras]")


def test_roundtrip_skips_a_missing_keras_like_a_missing_torch():
    done = without("keras,tensorflow,tf_keras", "roundtrip", TAGGER)
    assert done.returncode == 0, done.stdout + done.stderr
    keras_line = next(line for line in done.stdout.splitlines() if line.strip().startswith("keras"))
    assert "SKIP" in keras_line and "not installed" in keras_line, done.stdout
    assert done.stdout.rstrip().endswith("PASS")


# -- 7. an empty file is "empty file" in every format -------------------------------------------------

@pytest.mark.parametrize("name", ["empty.onnx", "empty.keras", "empty.pt"])
def test_empty_file_says_so(tmp_path, name):
    src = tmp_path / name
    src.write_bytes(b"")
    assert_refused(lstmconvert("convert", src, "-o", tmp_path / "out.pt"), str(src), "empty file")
    assert files_in(tmp_path) == [name]


# -- 8. output hygiene --------------------------------------------------------------------------------

def test_nothing_on_stdout_when_a_cast_then_fails(tmp_path):
    # bfloat16 ONNX is refused after the cast was decided: the cast must not have been announced
    assert_refused(lstmconvert("convert", TAGGER, "-o", tmp_path / "bi.onnx", "--dtype", "bfloat16"), "bfloat16")
    assert files_in(tmp_path) == []


def test_keras_write_and_run_print_only_lstmconvert_lines():
    pytest.importorskip("keras", reason="keras (the [keras] extra) writes and runs Keras files")
    pytest.importorskip("tf_keras", reason="tf_keras runs files tf.keras wrote")
    # writes a .keras with Keras 3, runs the source in tf_keras and the written file in Keras 3
    done = lstmconvert("roundtrip", KERAS / "tagger_tf_keras.h5", "--via", "keras")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == "", done.stderr
    assert done.stdout.rstrip().endswith("PASS")


FRAMEWORK_WARNING = """
import sys, torch
# torch.load, wrapped by code that lives in a torch module, as PyTorch's own deprecation notices do
space = {'__name__': 'torch.serialization', 'original': torch.load}
exec("import warnings\\ndef load(*args, **kwargs):\\n    warnings.warn('TypedStorage is deprecated', UserWarning)\\n"
     "    return original(*args, **kwargs)\\n", space)
torch.load = space['load']
from lstmconvert.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_framework_internal_warnings_are_dropped_and_ours_shown(tmp_path):
    done = subprocess.run([sys.executable, "-c", FRAMEWORK_WARNING, "convert", str(TAGGER), "-o",
                           str(tmp_path / "bi.onnx"), "--merge", "mul"], capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "TypedStorage" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("lstmconvert: warning: ") for line in lines), done.stderr
    assert any("mul" in line for line in lines)


def test_torch_kernel_warnings_are_dropped(capsys):
    # PyTorch's C++ warns (when oneDNN is in use) that projected LSTMs run on its default kernel: a note
    # about its internals, raised while lstmconvert's code runs the model
    code, out, err = in_process(capsys, "verify", TORCH / "tagger_proj.pt", TORCH / "tagger_proj.pt", "--batch", "1",
                                "--steps", "2")
    assert code == 0, out + err
    assert err == "", err


# -- 9. assumptions a state_dict cannot confirm are stated --------------------------------------------

def test_convert_and_inspect_state_what_a_state_dict_cannot_record(tmp_path, capsys):
    source = TORCH / "classifier_last.pt"  # its forward reads the last state: the default readout is wrong
    done = lstmconvert("convert", source, "-o", tmp_path / "bi.pt")
    assert done.returncode == 0, done.stderr
    note = next(line for line in done.stdout.splitlines() if line.startswith("note: "))
    assert "seq-first" in note and "readout sequence" in note and "--readout last" in note and "--batch-first" in note
    _, inspected, _ = in_process(capsys, "inspect", source)
    assert note in inspected.splitlines()
    _, inspected, _ = in_process(capsys, "inspect", source, "--json")
    assert json.loads(inspected)["assumed"] == note[len("note: "):]
    code, told, _ = in_process(capsys, "convert", source, "-o", tmp_path / "bi2.pt", "--batch-first", "--readout", "last")
    assert code == 0 and "note:" not in told, told
    # lstmconvert's own .pt records the layout and readout, so reading it back assumes nothing
    _, inspected, _ = in_process(capsys, "inspect", tmp_path / "bi.pt")
    assert "note:" not in inspected


def test_convert_json_reports_what_was_written(tmp_path, capsys):
    target = tmp_path / "bi.pt"
    code, out, err = in_process(capsys, "convert", TAGGER, "-o", target, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["format"] == "torch" and report["source_format"] == "torch"
    assert report["written"] == [{"path": str(target), "bytes": target.stat().st_size}]
    assert report["preservation"]["status"] == "exact"
    assert report["mode"] == "bidirectional" and report["assumed"]


# -- 10. what the README shows has no side effects and matches the tools ------------------------------

def test_warm_start_writes_outside_docs_by_default():
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import warm_start
    finally:
        sys.path.remove(str(REPO / "examples"))
    out_dir = Path(warm_start.parse([]).out_dir).resolve()
    assert out_dir != (REPO / "docs").resolve()


def test_benchmark_workdir_is_created(tmp_path):
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.run import make_workdir
    finally:
        sys.path.remove(str(REPO))
    scratch = make_workdir(tmp_path / "not" / "yet")
    assert scratch.is_dir() and scratch.parent == tmp_path / "not" / "yet"


def test_benchmark_duration_is_the_same_everywhere():
    said = {
        name: set(re.findall(r"~(\d+) minutes", (REPO / name).read_text()))
        for name in ("README.md", "docs/benchmarks.md", "benchmarks/run.py")
    }
    assert all(said.values()) and len(set.union(*said.values())) == 1, said


COMMANDS = ["convert", "inspect", "verify", "roundtrip"]


def help_options(command: str) -> set:
    """Every option spelling ``lstmconvert COMMAND --help`` lists (``--preserve / --no-preserve`` gives both)."""
    section = lstmconvert(command, "--help").stdout.split("Options:", 1)[1]
    options = set()
    for line in section.splitlines():
        first_column = re.match(r"^  (-\S.*?)(?:\s{2,}|$)", line)
        if first_column:
            options |= set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", first_column.group(1)))
    return options - {"-h", "--help"}


def test_help_texts_say_what_o_is():
    assert "DST" not in lstmconvert("convert", "--help").stdout


def readme_options(readme: str, command: str) -> set:
    """The options in the first column of the README's "`lstmconvert COMMAND ...` options:" table."""
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    table = re.split(rf"`lstmconvert {command}[^`]*` options", section, maxsplit=1)[1].split("\n\n", 2)[1]
    options = set()
    for row in table.splitlines()[2:]:  # skip the header and the |---| line
        first_cell = row.split(" | ")[0]
        options |= set(re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", first_cell))
    return options


def test_readme_documents_every_option_help_shows_and_no_other():
    readme = (REPO / "README.md").read_text()
    shown_anywhere = set()
    for command in COMMANDS:
        shown = help_options(command)
        assert readme_options(readme, command) == shown, command
        shown_anywhere |= shown
    assert "--version" in lstmconvert("--help").stdout and "`lstmconvert --version`" in readme
    # every option the README's example commands use exists
    commands = re.findall(r"lstmconvert (?:convert|inspect|verify|roundtrip)\b[^\n`]*", readme)
    used = {o for line in commands for o in re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", line.split("#")[0])}
    assert used and not used - shown_anywhere, sorted(used - shown_anywhere)
