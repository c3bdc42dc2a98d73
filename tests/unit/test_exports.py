"""The public surface: what ``trio_litellm`` exports, and that nothing public hides elsewhere."""

from __future__ import annotations

import inspect

import trio_litellm
from trio_litellm import _errors


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
