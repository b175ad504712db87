"""The one error a model artefact raises when it cannot be loaded or built."""

from __future__ import annotations


class ModelArtefactError(ValueError):
    """The artefact is missing, unreadable, of an unknown format, or inconsistent; the message
    says which file and what to do about it."""
