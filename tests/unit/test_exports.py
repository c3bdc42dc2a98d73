"""The public surface: what ``trio_litellm`` exports, and that nothing public hides elsewhere."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import msgspec
import pytest

import trio_litellm
import trio_litellm.batch
import trio_litellm.realtime
from trio_litellm import _errors

ROOT = Path(__file__).resolve().parents[2]


def test_every_name_in_all_is_importable_and_listed_once() -> None:
    assert len(trio_litellm.__all__) == len(set(trio_litellm.__all__))
    for name in trio_litellm.__all__:
        assert hasattr(trio_litellm, name), name


def test_all_is_sorted() -> None:
    assert trio_litellm.__all__ == sorted(trio_litellm.__all__)


def test_every_error_class_of_the_tree_is_exported() -> None:
    for name in _errors.__all__:
        value = getattr(_errors, name)
        if inspect.isclass(value) and issubclass(value, Exception):
            assert getattr(trio_litellm, name, None) is value, name
            assert name in trio_litellm.__all__, name


def test_every_error_the_package_defines_is_in_the_one_error_module() -> None:
    for module in pkgutil.walk_packages(trio_litellm.__path__, "trio_litellm."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    seen: list[type[trio_litellm.LiteLLMError]] = []
    stack = [trio_litellm.LiteLLMError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    assert len(seen) > 30  # the walk did find the tree
    for cls in seen:
        if cls.__module__.startswith("trio_litellm"):  # not a test's own subclass
            assert cls.__module__ == "trio_litellm._errors", cls


def test_the_batch_errors_are_also_exported_by_batch() -> None:
    for name in ("BatchInputError", "OutputCorruptError", "OutputLockedError"):
        assert getattr(trio_litellm.batch, name) is getattr(trio_litellm, name), name
        assert name in trio_litellm.batch.__all__, name


def test_the_openai_sdk_names_are_exported_as_ours() -> None:
    assert trio_litellm.APIError.__module__ == "trio_litellm._errors"
    assert trio_litellm.APITimeoutError is trio_litellm.RequestTimeoutError
    assert issubclass(trio_litellm.APIConnectionError, trio_litellm.APIError)
    assert issubclass(trio_litellm.APIStatusError, trio_litellm.APIError)
    for name in ("APIConnectionError", "APIError", "APIStatusError", "APITimeoutError"):
        assert name in trio_litellm.__all__


def test_public_objects_say_they_live_in_the_package() -> None:
    for name in trio_litellm.__all__:
        value = getattr(trio_litellm, name)
        module = getattr(value, "__module__", None)
        if module is not None and (inspect.isclass(value) or inspect.isfunction(value)):
            assert module.startswith("trio_litellm"), (name, module)


def _package_classes(annotation: object, found: set[type]) -> None:
    """Every class of ours named in an annotation, through unions, generics and aliases."""
    if isinstance(annotation, type) and annotation.__module__.startswith("trio_litellm"):
        found.add(annotation)
    origin = typing.get_origin(annotation)
    if origin is not None:
        _package_classes(origin, found)
    for argument in typing.get_args(annotation):
        _package_classes(argument, found)


def _what_a_user_gets_from(value: object) -> set[type]:
    """The classes of our own that a public name hands out: a Struct's fields, the return of a
    function, of a public method or of a property."""
    namespace = vars(trio_litellm)
    found: set[type] = set()
    functions: list[object] = []
    if inspect.isclass(value):
        if issubclass(value, msgspec.Struct):
            for annotation in typing.get_type_hints(value, localns=namespace).values():
                _package_classes(annotation, found)
        for name, member in inspect.getmembers(value):
            if not name.startswith("_"):
                functions.append(member.fget if isinstance(member, property) else member)
    else:
        functions.append(value)
    for function in functions:
        if inspect.isfunction(function):
            hints = typing.get_type_hints(function, localns=namespace)
            _package_classes(hints.get("return"), found)
    return found


def test_every_class_the_public_api_hands_out_is_exported() -> None:
    # The realtime events are many and named as the protocol names them (ResponseDone...): they
    # live in their own public module, trio_litellm.realtime, as the openai SDK keeps its own in
    # openai.types.realtime.
    def exported(cls: type) -> bool:
        return any(
            getattr(module, cls.__name__, None) is cls and cls.__name__ in module.__all__
            for module in (trio_litellm, trio_litellm.realtime)
        )

    hidden = {
        (name, cls.__qualname__)
        for module in (trio_litellm, trio_litellm.realtime)
        for name in module.__all__
        for cls in _what_a_user_gets_from(getattr(module, name))
        if not exported(cls)
    }
    assert not hidden, "handed out but not exported: " + repr(sorted(hidden))


def test_the_library_imports_no_terminal_code() -> None:
    """rich and cyclopts are for the ``trio-litellm`` command (``trio_litellm.cli``) and the fake
    provider's command line: an application importing the client or running a batch loads
    neither."""
    code = (
        "import sys, trio_litellm, trio_litellm.batch, trio_litellm.testing.fake_provider\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'rich', 'cyclopts'}))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


@pytest.mark.parametrize(
    "name", ["trio_litellm.batch", "trio_litellm.cli", "trio_litellm.testing.fake_provider"]
)
def test_every_name_a_public_subpackage_lists_is_importable(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__)
    for item in module.__all__:
        assert hasattr(module, item), (name, item)


def test_the_command_line_entry_points_name_the_cli_package() -> None:
    import trio_litellm.cli

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"trio-litellm": "trio_litellm.cli:main"}
    assert callable(trio_litellm.cli.main)
