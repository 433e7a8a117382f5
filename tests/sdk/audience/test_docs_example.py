"""docs/audience.md's robot example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "audience.md"


def test_the_robot_greeting_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (robot,) = [b for b in blocks if "on_look=greet" in b]
    exec(compile(robot, str(DOC), "exec"), {})
