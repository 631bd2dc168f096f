"""Scenarios (recordings, generators, recordings plus a fault) and choosing one for a request.

Selection, first match wins (README.md "Choosing a scenario"):
  1. header `X-Mock-Scenario: NAME` (or, without it, a runtime fault's `scenario`);
  2. a tag `[mock:NAME]` in the last user message;
  3. the model `mock-NAME`;
  4. the rules of scenarios.toml;
  5. `synthetic` when the last user message says `chunks=N`;
  6. `default`.
"""

import os
import re
import tomllib
from dataclasses import dataclass

from mock_upstream.faults import Fault, FaultError, merge, parse_fault
from mock_upstream.generated import last_user_text, wants_synthetic
from mock_upstream.pacing import Pacing, PacingError, parse_pacing
from mock_upstream.recordings import Recording

BUILTIN_SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios.toml")
GENERATORS = {"default": "a short deterministic answer derived from the prompt",
              "synthetic": "mock_sse.js-compatible load stream: chunks=N delay=MS size=CHARS",
              "paced": "generated text timed by drawn TTFT, tokens/s and length (a scenario's `pacing`)"}
_TAG = re.compile(r"\[mock:([A-Za-z0-9_.-]+)\]")


class ScenarioError(ValueError):
    """scenarios.toml is invalid, or a request named a scenario that does not exist."""


@dataclass(frozen=True)
class Scenario:
    """A named behaviour: a recording or a generator, maybe with a fault on top."""

    name: str
    description: str = ""
    recording: Recording | None = None
    generator: str | None = None
    fault: Fault | None = None
    pacing: Pacing | None = None  # the paced generator's distributions


@dataclass(frozen=True)
class Rule:
    """`when` matches body fields: equality on top-level keys, `contains`, `has_image`."""

    when: dict
    scenario: str

    def matches(self, body: dict) -> bool:
        for key, expected in self.when.items():
            if key == "contains":
                if expected not in last_user_text(body):
                    return False
            elif key == "has_image":
                if has_image(body) != expected:
                    return False
            elif body.get(key) != expected:
                return False
        return True


def has_image(body: dict) -> bool:
    """An image_url part in a chat message, or an input_image part in a Responses input item."""
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    if not messages and isinstance(body.get("input"), list):
        messages = body["input"]
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") in ("image_url", "input_image")
                                             for p in content):
            return True
    return False


class Registry:
    """All scenarios by name, and the rules; built once when the app starts."""

    def __init__(self, recordings: dict, scenarios_file: str | None = BUILTIN_SCENARIOS):
        self.scenarios = {name: Scenario(name, d, generator=name, pacing=parse_pacing({}) if name == "paced" else None)
                          for name, d in GENERATORS.items()}
        for name, rec in recordings.items():
            fault = parse_fault(rec.fault) if rec.fault else None
            self.scenarios[name] = Scenario(name, rec.description, recording=rec, fault=fault)
        self.rules = []
        if scenarios_file:
            self._load(scenarios_file)

    def names(self) -> list:
        return sorted(self.scenarios)

    def _get(self, name: str) -> Scenario:
        try:
            return self.scenarios[name]
        except KeyError:
            raise ScenarioError(f"unknown mock scenario {name!r}; known: {', '.join(self.names())}") from None

    def select(self, headers, body: dict, forced: str | None = None, api: str = "chat") -> Scenario:
        """The scenario for this request (see the module docstring for the order).

        For api "responses" a NAME means `responses_NAME` (or NAME itself when it is a
        `responses_` recording or one that fits both APIs: an HTTP error, a generator); rules
        whose scenario has no Responses form are skipped.
        """
        name = headers.get("X-Mock-Scenario") or forced
        if name:
            return self.get(name.strip(), api)
        tag = _TAG.search(last_user_text(body))
        if tag:
            return self.get(tag.group(1), api)
        model = body.get("model")
        if isinstance(model, str) and model.startswith("mock-"):
            return self.get(model[len("mock-"):], api)
        for rule in self.rules:
            if rule.matches(body):
                try:
                    return self.get(rule.scenario, api)
                except ScenarioError:
                    continue
        return self.scenarios["synthetic" if wants_synthetic(body) else "default"]

    def get(self, name: str, api: str | None = None) -> Scenario:
        """The scenario NAME; with `api`, the one that answers that API (see select)."""
        if api is None:
            return self._get(name)
        if api == "responses" and "responses_" + name in self.scenarios:
            return self.scenarios["responses_" + name]
        scenario = self._get(name)
        if not self.speaks(scenario, api):
            raise ScenarioError(f"mock scenario {name!r} has no {api} form; known: {', '.join(self.names_for(api))}")
        return scenario

    @staticmethod
    def speaks(scenario: Scenario, api: str) -> bool:
        rec = scenario.recording
        if rec is None or (rec.kind == "json" and rec.status >= 400):
            return True  # generators and HTTP errors answer both APIs
        return rec.api == api

    def names_for(self, api: str) -> list:
        return [n for n in self.names() if self.speaks(self.scenarios[n], api)]

    def _load(self, path: str) -> None:
        where = os.path.basename(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ScenarioError(f"{where}: {e}") from None
        unknown = set(data) - {"scenario", "rule"}
        if unknown:
            raise ScenarioError(f"{where}: unknown table(s): {', '.join(sorted(unknown))}")
        for i, item in enumerate(data.get("scenario", []), 1):
            self._add_scenario(item, f"{where}: scenario #{i}")
        for i, item in enumerate(data.get("rule", []), 1):
            self._add_rule(item, f"{where}: rule #{i}")

    def _add_scenario(self, item: dict, where: str) -> None:
        if set(item) - {"name", "base", "description", "fault", "pacing"} or not isinstance(item.get("name"), str):
            raise ScenarioError(f"{where}: needs name, base, and optional description, fault and pacing only")
        base = self.scenarios.get(item.get("base", "paced" if "pacing" in item else None))
        if base is None:
            raise ScenarioError(f"{where}: unknown base {item.get('base')!r}")
        try:
            fault = parse_fault(item.get("fault", {}))
        except FaultError as e:
            raise ScenarioError(f"{where}: fault: {e}") from None
        pacing = base.pacing.fresh() if base.pacing else None
        if "pacing" in item:
            if base.generator != "paced":
                raise ScenarioError(f"{where}: pacing needs base = \"paced\" (or no base)")
            try:
                pacing = parse_pacing(item["pacing"])
            except PacingError as e:
                raise ScenarioError(f"{where}: {e}") from None
        self.scenarios[item["name"]] = Scenario(item["name"], item.get("description", base.description),
                                                base.recording, base.generator, merge(base.fault, fault), pacing)

    def _add_rule(self, item: dict, where: str) -> None:
        when, name = item.get("when"), item.get("scenario")
        if set(item) - {"when", "scenario"} or not isinstance(when, dict) or not when:
            raise ScenarioError(f"{where}: needs a non-empty `when` table and a `scenario`")
        if name not in self.scenarios:
            raise ScenarioError(f"{where}: unknown scenario {name!r}")
        self.rules.append(Rule(dict(when), name))
