"""README figures come from docs/results (issue 27): its results blocks equal what benchmarks/update_readme.py
renders from docs/results/*.json, no measured figure stands outside them, and every docs/results file names the
command that wrote it and carries no local path."""

import json
import re
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
# a measured figure: a decimal, a percentage, a duration, a size or a speed (section numbers such as §5.3 are not)
FIGURE = re.compile(r"(?<![§\w.])\d+\.\d+(?!\.?\w)|\d+ ?%|\b\d+(\.\d+)? ?(s|min|minutes|h|GB|MB|images/s)\b")
ALLOWED = ("95 %",)  # the confidence level of every interval, a choice rather than a measurement


def test_readme_results_blocks_match_docs_results():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "update_readme.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert re.search(r"<!-- results:sample_size -->\n.+\n<!-- /results -->", (ROOT / "README.md").read_text())


def test_readme_states_no_figure_outside_the_copied_blocks():
    text = (ROOT / "README.md").read_text()
    prose = re.sub(r"<!-- results:[\w-]+ -->\n.*?<!-- /results -->", "", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    typed = [(m.group(0), line.strip()[:100]) for line in prose.splitlines() for m in FIGURE.finditer(line)
             if m.group(0) not in ALLOWED]
    assert not typed, f"figures typed into the README (move them to docs/results via a script): {typed}"


def test_every_results_file_names_its_command_and_no_local_path():
    files = sorted((ROOT / "docs" / "results").glob("*.md"))
    assert any(f.stem == "sample_size" for f in files)
    for md in files:
        text = md.read_text()
        assert re.search(r"Written by `python benchmarks/[\w./-]+\.py", text), md.name
        meta = json.loads(md.with_suffix(".json").read_text())
        assert meta["command"].startswith("python benchmarks/") and meta["commit"] and meta["packages"]["torch"]
        assert meta["multclf_sha256"], md.name
        for local in ("/tmp/", "/home/", "/work/", "/root/"):
            assert local not in text and local not in md.with_suffix(".json").read_text(), (md.name, local)
