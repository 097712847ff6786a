"""An in-process stand-in for the Hub's HTTP API (huggingface_hub's client code runs for real above it)."""

from __future__ import annotations

import base64
import json

import httpx2


class FakeHub:
    """Answers the Hub API calls of create_repo + create_commit and records what was committed."""

    def __init__(self, fail_commit: bool = False) -> None:
        self.fail_commit = fail_commit
        self.files: dict[str, bytes] = {}
        self.paths: list[str] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.paths.append(f"{request.method} {path}")
        if path == "/api/repos/create":
            name = json.loads(request.content)["name"]
            return httpx2.Response(200, json={"url": f"https://huggingface.co/me/{name}", "name": name, "id": "1"})
        if path == "/api/validate-yaml":
            return httpx2.Response(200, json={"warnings": [], "errors": []})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if "/commit/" in path:
            if self.fail_commit:
                return httpx2.Response(500, json={"error": "Internal error"}, request=request)
            for line in request.content.decode().splitlines():
                record = json.loads(line)
                if record["key"] == "file":
                    self.files[record["value"]["path"]] = base64.b64decode(record["value"]["content"])
            return httpx2.Response(200, json={"commitUrl": "https://hf.co/me/x/commit/abc", "commitOid": "abc"})
        return httpx2.Response(404, request=request)
