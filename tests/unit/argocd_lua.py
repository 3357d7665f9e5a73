"""Run an Argo CD health check (manifests/argocd/*.lua) on an object, with Debian's Lua interpreters.

Argo CD runs these scripts in gopher-lua (Lua 5.1) with the object as the global `obj` and only the
base, string, table and math libraries; the harness does the same (an environment holding just those),
under lua5.1 and lua5.4 (`make deps` installs both).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
INTERPRETERS = ("lua5.1", "lua5.4")

# What Argo CD's sandbox offers a health script (no os, io, require, load...).
_SANDBOX = """
local env = {obj = obj, string = string, table = table, math = math, ipairs = ipairs, pairs = pairs,
  next = next, select = select, tostring = tostring, tonumber = tonumber, type = type, error = error,
  pcall = pcall, unpack = unpack or table.unpack}
local chunk
if setfenv then
  chunk = assert(loadfile(SCRIPT))
  setfenv(chunk, env)
else
  local f = assert(io.open(SCRIPT))
  local src = f:read("a")
  f:close()
  chunk = assert(load(src, "=" .. SCRIPT, "t", env))
end
local hs = chunk()
io.write(tostring(hs.status), "\\n", tostring(hs.message), "\\n")
"""


def lua_literal(value: Any) -> str:
    """JSON value -> Lua constructor. null becomes nil (absent), as Argo CD's conversion does."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        return repr(value)
    if isinstance(value, str):
        out = []
        for ch in value:
            if ch in "\\\"":
                out.append("\\" + ch)
            elif ch.isascii() and ch.isprintable():
                out.append(ch)
            else:
                out.extend(f"\\{b}" for b in ch.encode())
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        items = [f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"not JSON: {type(value)}")


def interpreter(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise AssertionError(f"{name} is not installed: run `make deps` (Debian packages lua5.1 and lua5.4)")
    return exe


def health(kind: str, obj: dict[str, Any], lua: str = "lua5.4") -> tuple[str, str]:
    """(status, message) the kind's health check gives the object."""
    script = ARGOCD / f"agentops.dev_{kind}.lua"
    program = f"SCRIPT = {lua_literal(str(script))}\nobj = {lua_literal(obj)}\n{_SANDBOX}"
    proc = subprocess.run([interpreter(lua), "-"], input=program, capture_output=True, text=True, timeout=20)
    if proc.returncode != 0:
        raise AssertionError(f"{lua} {script.name} failed: {proc.stderr.strip()}")
    status, message = proc.stdout.rstrip("\n").split("\n", 1)
    return status, message


def load_sample(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())["object"]
