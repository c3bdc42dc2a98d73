"""The error tree: drawn once in the README and in ``_errors``, and the classes as drawn.

The drawing is parsed, so a class that moves, gains a base, stops being retried or is added
without being drawn makes a test fail rather than the documentation wrong.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import msgspec
import pytest

import trio_litellm
from trio_litellm import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    BatchInputError,
    ClientClosedError,
    ConfigError,
    DumpFileError,
    InvalidRequestError,
    LiteLLMError,
    OutputCorruptError,
    OutputLockedError,
    ProxyConnectionError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    StreamInterruptedError,
    UsageError,
    _errors,
    read_dump,
)
from trio_litellm._classify import error_from_body
from trio_litellm.batch import InputProblem, OutputLock, scan_input

README = Path(__file__).resolve().parents[2] / "README.md"

_ROOT = re.compile(r"(?P<name>[A-Z]\w+)(?P<text>.*)")
_NODE = re.compile(r"(?P<indent>(?:[│ ]   )*)[├└]── (?P<name>[A-Z]\w+)(?P<text>.*)")
_MORE = re.compile(r"[│ ]*(?P<text>[^│ ].*)")


class Node(msgspec.Struct, frozen=True):
    name: str
    parent: str | None
    text: str


def readme_tree() -> str:
    """The code block of the README's "### Errors" section."""
    readme = README.read_text(encoding="utf-8")
    section = readme[readme.index("\n### Errors\n") :]
    start = section.index("```\n") + len("```\n")
    return section[start : section.index("```", start)].rstrip("\n")


def docstring_tree() -> str:
    """The ``::`` block of ``_errors``' docstring, dedented."""
    assert _errors.__doc__ is not None
    block = _errors.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    return textwrap.dedent(block).rstrip("\n")


def parse_tree(drawing: str) -> list[Node]:
    """Each class of a box-drawn tree, with its parent and its description (lines joined)."""
    lines = drawing.splitlines()
    root = _ROOT.fullmatch(lines[0])
    assert root is not None, lines[0]
    names = [root["name"]]  # the path from the root to the last node, by depth
    texts = {root["name"]: [root["text"].strip()]}
    nodes = [(root["name"], None)]
    for line in lines[1:]:
        node = _NODE.fullmatch(line)
        if node is not None:
            depth = len(node["indent"]) // 4 + 1
            assert depth <= len(names), f"{node['name']} has no parent line: {line!r}"
            del names[depth:]
            nodes.append((node["name"], names[-1]))
            names.append(node["name"])
            texts[node["name"]] = [node["text"].strip()]
            continue
        more = _MORE.fullmatch(line)
        assert more is not None, f"neither a class nor a continued description: {line!r}"
        texts[names[-1]].append(more["text"].strip())
    return [Node(name, parent, " ".join(texts[name])) for name, parent in nodes]


def tree_classes() -> set[type[LiteLLMError]]:
    return {
        value
        for value in vars(_errors).values()
        if inspect.isclass(value) and issubclass(value, LiteLLMError)
    }


# --- the drawings -------------------------------------------------------------------------------


def test_the_readme_draws_the_tree_that_the_module_draws() -> None:
    assert readme_tree() == docstring_tree()


def test_the_drawing_names_every_class_of_the_tree_once() -> None:
    names = [node.name for node in parse_tree(readme_tree())]
    assert len(names) == len(set(names))
    assert {getattr(trio_litellm, name) for name in names} == tree_classes()


def test_each_drawn_class_has_the_drawn_parent_as_its_base() -> None:
    for node in parse_tree(readme_tree()):
        cls = getattr(trio_litellm, node.name)
        assert cls.__name__ == node.name
        ours = [base for base in cls.__bases__ if issubclass(base, LiteLLMError)]
        if node.parent is None:
            assert cls is LiteLLMError
        else:
            assert ours == [getattr(trio_litellm, node.parent)], node.name


def test_the_drawing_names_each_builtin_base_a_class_also_has() -> None:
    for node in parse_tree(readme_tree()):
        cls = getattr(trio_litellm, node.name)
        others = [base for base in cls.__bases__ if not issubclass(base, LiteLLMError)]
        if cls is LiteLLMError:
            assert others == [Exception]
            continue
        for base in others:
            assert f"a {base.__name__}" in node.text, (node.name, base.__name__)


def test_retried_is_drawn_exactly_on_the_classes_the_policy_retries() -> None:
    for node in parse_tree(readme_tree()):
        assert ("(retried)" in node.text) == getattr(trio_litellm, node.name).retryable, node.name


def test_the_other_names_drawn_are_the_same_class() -> None:
    aliases = [
        (node.name, alias)
        for node in parse_tree(readme_tree())
        for alias in re.findall(r"also named (\w+)", node.text)
    ]
    assert aliases == [("RequestTimeoutError", "APITimeoutError")]
    for name, alias in aliases:
        assert getattr(trio_litellm, alias) is getattr(trio_litellm, name)


# --- the two branches: what the caller did, and what the proxy or the network did --------------


def test_misuse_and_failure_are_the_two_branches_under_the_root() -> None:
    top = {node.name for node in parse_tree(readme_tree()) if node.parent == "LiteLLMError"}
    assert top == {"UsageError", "APIError"}
    assert not issubclass(UsageError, APIError)
    assert not issubclass(APIError, UsageError)


def test_no_usage_error_is_retried() -> None:
    for cls in tree_classes():
        if issubclass(cls, UsageError):
            assert cls.retryable is False, cls


def test_misuse_errors_are_also_the_builtin_errors_python_raises_for_them() -> None:
    assert issubclass(InvalidRequestError, ValueError)
    assert issubclass(InvalidRequestError, TypeError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(DumpFileError, ValueError)


def test_a_bad_dump_file_is_a_usage_error(tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    dump.write_bytes(b"not json\n")
    with pytest.raises(UsageError) as caught:
        read_dump(dump)
    assert type(caught.value) is DumpFileError
    assert caught.value.line_no == 1


def test_a_batch_input_that_cannot_be_sent_is_a_usage_error(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(b"{}\n")
    with pytest.raises(UsageError) as caught:
        scan_input(requests).raise_for_problems()
    assert type(caught.value) is BatchInputError
    assert [problem.line_no for problem in caught.value.problems] == [1]


def test_a_batch_output_held_by_another_run_is_a_usage_error(tmp_path: Path) -> None:
    output = tmp_path / "results.jsonl"
    with OutputLock(output), pytest.raises(UsageError) as caught, OutputLock(output):
        pass
    assert type(caught.value) is OutputLockedError


def test_the_batch_errors_keep_their_messages() -> None:
    problem = InputProblem(line_no=3, custom_id="a", message="no model")
    assert str(BatchInputError("in.jsonl", [problem])) == (
        "in.jsonl: 1 problem in the batch input file\n  in.jsonl:3: no model"
    )
    corrupt = OutputCorruptError("out.jsonl", 2, "not a record")
    assert (str(corrupt), corrupt.path, corrupt.line_no) == (
        "out.jsonl:2: not a record",
        "out.jsonl",
        2,
    )


# --- the names the openai SDK uses --------------------------------------------------------------


def test_openai_connection_and_timeout_names_catch_ours() -> None:
    assert APITimeoutError is RequestTimeoutError
    # As in the openai SDK, a timeout is a kind of connection error ...
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(ProxyConnectionError, APIConnectionError)
    # ... but ours stay apart: a timeout is not a failed connection (the health gate relies on it).
    assert not issubclass(RequestTimeoutError, ProxyConnectionError)


@pytest.mark.parametrize(
    "error",
    [
        ProxyConnectionError("refused"),
        RequestTimeoutError("slow"),
        ResponseDecodeError("not JSON"),
        StreamInterruptedError("broke", partial=None),
        error_from_body(429, b'{"error":{"message":"slow down","code":"429"}}'),
        error_from_body(500, b""),
    ],
    ids=repr,
)
def test_openai_api_error_catches_what_the_request_met(error: LiteLLMError) -> None:
    assert isinstance(error, APIError)
    assert not isinstance(error, UsageError)


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("rpm", "bad"),
        InvalidRequestError("x"),
        ClientClosedError("closed"),
        DumpFileError("dump.jsonl", 1, "torn"),
        OutputCorruptError("out.jsonl", 1, "not a record"),
        OutputLockedError("out.jsonl", "out.jsonl.lock", 42),
    ],
    ids=repr,
)
def test_openai_api_error_leaves_out_misuse_and_cancellation(error: LiteLLMError) -> None:
    assert not isinstance(error, APIError)
    assert isinstance(error, UsageError)


def test_status_code_is_none_without_a_status() -> None:
    assert ProxyConnectionError("refused").status_code is None
    assert LiteLLMError("x").status_code is None


def test_an_openai_style_except_chain_sorts_our_errors() -> None:
    def handled(error: Exception) -> str:
        try:
            raise error
        except APITimeoutError:
            return "timeout"
        except APIConnectionError:
            return "connection"
        except RateLimitError as exc:
            return f"rate limit {exc.status_code}"
        except APIStatusError as exc:
            return f"status {exc.status_code}"

    assert handled(RequestTimeoutError("slow")) == "timeout"
    assert handled(ProxyConnectionError("refused")) == "connection"
    assert handled(error_from_body(429, b"")) == "rate limit 429"
    assert handled(error_from_body(404, b"")) == "status 404"
