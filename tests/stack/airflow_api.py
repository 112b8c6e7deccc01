"""A small client for Airflow 3's REST API (/api/v2), the one the UI's own buttons call."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from localdev.airflow_stack.processes import wait_until

FINISHED = {"success", "failed"}


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body

    @property
    def detail(self) -> str:
        try:
            return str(json.loads(self.body).get("detail"))
        except ValueError:
            return self.body


@dataclass
class AirflowApi:
    base_url: str
    username: str
    password: str
    _token: str | None = field(default=None, repr=False)

    def _request(self, method: str, path: str, body: Any = None, token: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode(errors="replace")) from None

    def token(self) -> str:
        """A JWT from the SimpleAuthManager's /auth/token (what the login page gets)."""
        if self._token is None:
            credentials = {"username": self.username, "password": self.password}
            self._token = self._request("POST", "/auth/token", credentials, token=False)[
                "access_token"
            ]
        return self._token

    def forget_token(self) -> None:
        self._token = None

    def get(self, path: str) -> Any:
        return self._request("GET", "/api/v2" + path)

    def post(self, path: str, body: Any) -> Any:
        return self._request("POST", "/api/v2" + path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._request("PATCH", "/api/v2" + path, body)

    # --- what the tests do with it

    def unpause(self, dag_id: str) -> None:
        assert self.patch(f"/dags/{dag_id}", {"is_paused": False})["is_paused"] is False

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """POST a manual run, as the Trigger button does."""
        return self.post(f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        return self.get(f"/dags/{dag_id}/dagRuns?limit=100&order_by=start_date")["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        instances = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {ti["task_id"]: ti["state"] for ti in instances}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.get(path + "?deserialize=true")["value"]

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """Mark a task instance (e.g. "failed"), as the UI's Mark as… menu does."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        self.patch(path, {"new_state": state})

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        timeout: float,
        seen: set[tuple[str, str | None]] | None = None,
    ) -> dict[str, Any]:
        """The run once finished; AssertionError with its task states after `timeout` s.
        `seen` collects every (task_id, state) observed while waiting."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}"

        def finished() -> dict[str, Any] | None:
            if seen is not None:
                seen.update(self.task_states(dag_id, run_id).items())
            run = self.get(path)
            return run if run["state"] in FINISHED else None

        try:
            return wait_until(finished, timeout, 3, f"{run_id} to finish")
        except TimeoutError:
            raise AssertionError(
                f"{run_id} still {self.get(path)['state']} after {timeout:.0f} s: "
                f"{self.task_states(dag_id, run_id)}"
            ) from None
